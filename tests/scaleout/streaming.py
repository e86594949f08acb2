"""Timing one streamed chat completion: when the first text arrived, when the reply ended."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx

PROMPT = [{"role": "user", "content": "Tell me about the sea."}]


@dataclass(frozen=True)
class StreamTiming:
    first_text_s: float  # time to first token, from sending the request
    done_s: float  # time to the end of the stream
    pieces: int
    text: str


def time_stream(
    base_url: str, max_tokens: int = 24, headers: dict[str, str] | None = None
) -> StreamTiming:
    """Stream ``/v1/chat/completions`` (greedy) and time the first text piece and the end."""
    body = {"messages": PROMPT, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    first: float | None = None
    pieces: list[str] = []
    started = time.perf_counter()
    with (
        httpx.Client(timeout=120, headers=headers) as client,
        client.stream("POST", f"{base_url}/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            for choice in json.loads(line[5:]).get("choices", []):
                text = (choice.get("delta") or {}).get("content")
                if text:
                    first = first if first is not None else time.perf_counter() - started
                    pieces.append(text)
    done = time.perf_counter() - started
    assert first is not None, "no text came back"
    return StreamTiming(first, done, len(pieces), "".join(pieces))
