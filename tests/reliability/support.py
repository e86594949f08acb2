"""What the reliability tests share: knobs read from the environment, process probes, clients.

Durations and client counts come from ``CHATBOT_SOAK_*`` variables so that ``make test`` runs
short versions and ``make soak`` the long ones, with the same code.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger(__name__)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"
HI = [{"role": "user", "content": "Hi"}]


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def soak_seconds() -> float:
    """Measured load time after the warm-up (``make soak``: 600)."""
    return env_float("CHATBOT_SOAK_SECONDS", 30)


def soak_clients() -> int:
    """Concurrent streaming clients of the load test (``make soak``: 32)."""
    return env_int("CHATBOT_SOAK_CLIENTS", 8)


def record(name: str, figures: dict[str, Any]) -> None:
    """Keep a test's figures (test-artifacts/reliability/<name>.json) for RELIABILITY.md."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    figures = {"recorded_at": time.strftime("%Y-%m-%d %H:%M:%S"), **figures}
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    logger.info("%s: %s", name, figures)


# -- the server process, seen from outside ---------------------------------------------------
@dataclass(frozen=True)
class ProcessSample:
    rss_anon_kb: int
    threads: int
    fds: int


def sample(pid: int) -> ProcessSample:
    """RssAnon (heap, not the mapped model file), thread and open-descriptor counts."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return ProcessSample(
        rss_anon_kb=int(fields["RssAnon"].split()[0]),
        threads=int(fields["Threads"]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
    )


def metric(base_url: str, name: str, headers: dict[str, str] | None = None) -> float:
    """Sum of a metric's samples whose line starts with ``name`` (a name, or name{labels)."""
    text = httpx.get(f"{base_url}/metrics", headers=headers, timeout=30).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_idle(base_url: str, timeout: float = 60) -> None:
    """Until no request holds or waits for a generation place."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = metric(base_url, "chatbot_requests_in_flight") + metric(
            base_url, "chatbot_requests_queued"
        )
        if busy == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"places still taken after {timeout:.0f}s")


# -- streaming clients -------------------------------------------------------------------------
@dataclass
class StreamResult:
    """What one streaming request saw."""

    status: int
    events: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    first_event_s: float | None = None
    elapsed_s: float = 0.0

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1] == "[DONE]"

    def json_events(self) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.events if e != "[DONE]"]

    def finish_reason(self) -> str | None:
        for chunk in reversed(self.json_events()):
            for choice in chunk.get("choices", []):
                if choice.get("finish_reason"):
                    return str(choice["finish_reason"])
        return None

    def text(self) -> str:
        parts = []
        for chunk in self.json_events():
            for choice in chunk.get("choices", []):
                parts.append(choice.get("delta", {}).get("content") or "")
        return "".join(parts)

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def stream_sse(
    client: httpx.Client,
    method: str,
    url: str,
    body: dict[str, Any],
    *,
    stop_after_content: bool = False,
) -> StreamResult:
    """Send one request and read its SSE ``data:`` events (or the error body)."""
    started = time.monotonic()
    result = StreamResult(status=0)
    try:
        with client.stream(method, url, json=body) as response:
            result.status = response.status_code
            result.headers = dict(response.headers)
            if response.status_code != 200:
                result.error = response.read().decode(errors="replace")
                return result
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                result.events.append(data)
                if result.first_event_s is None and _has_text(data):
                    result.first_event_s = time.monotonic() - started
                    if stop_after_content:
                        return result  # leaving the block closes the connection mid-stream
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.elapsed_s = time.monotonic() - started
    return result


def _has_text(data: str) -> bool:
    if data == "[DONE]":
        return False
    payload = json.loads(data)
    if payload.get("type") == "delta":  # a conversation ReplyEvent
        return bool(payload.get("delta"))
    return any(c.get("delta", {}).get("content") for c in payload.get("choices", []))


def chat_body(max_tokens: int, prompt: str = "Hi", **extra: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": True,
        **extra,
    }
