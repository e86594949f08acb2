"""``GET /v1/status`` and the wait before the first token, over real HTTP.

The in-process tier checks the route and its schema; the real-server tier runs ``chatbot serve``
with one generation place and watches a queued request: an SSE comment with its place in the
queue before its first chunk (the official ``openai`` client reads past it), ``waiting`` events
on the conversation stream, and the status route counting both.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from chatbot.domain import GenerationParams, ReplyEventType, WaitPhase
from chatbot.service.http import HttpChatService
from tests.fixtures.prompts import LONG_PROMPT
from tests.fixtures.servers import BackendProcess

LONG = {"role": "user", "content": LONG_PROMPT}


def test_status_answers_with_the_documented_shape(client: TestClient) -> None:
    response = client.get("/v1/status")
    assert response.status_code == 200
    body = response.json()
    assert body["loaded"] is True
    assert body["running"] == 0 and body["queued"] == 0
    assert body["max_concurrent"] >= 1 and body["estimate_s"] == 0.0
    assert body["mean_reply_s"] is None  # nothing measured yet
    schema = client.get("/openapi.json").json()
    answer = schema["paths"]["/v1/status"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ServerStatus")
    client.post("/v1/chat/completions", json={"messages": [LONG], "max_tokens": 2})
    assert client.get("/v1/status").json()["mean_reply_s"] is not None


def _wait_for_queue(url: str, length: int) -> dict[str, Any]:
    """The status once ``length`` requests wait (or after 120 s, for the asserts to explain)."""
    deadline = time.monotonic() + 120
    while True:
        status: dict[str, Any] = httpx.get(f"{url}/v1/status").json()
        if status["queued"] >= length or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def _stream_lines(
    url: str,
    body: dict[str, Any],
    lines: list[str],
    started: threading.Event,
    leave: threading.Event | None = None,
) -> None:
    """Read a streamed reply's lines; leaving (``leave`` set) closes it, which stops it."""
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("data:"):
                started.set()
            if leave is not None and leave.is_set():
                return


@pytest.mark.slow
def test_a_queued_request_hears_its_place_before_its_first_token(
    start_backend: Callable[..., BackendProcess],
) -> None:
    backend = start_backend(
        wait_ready=False,
        CHATBOT_MAX_CONCURRENT_REQUESTS="1",
        CHATBOT_MAX_QUEUED_REQUESTS="3",
        CHATBOT_MAX_TOKENS_CAP="3000",
    )
    seen_loading = False
    deadline = time.monotonic() + 180
    while True:  # the status route answers while the model loads
        try:
            status = httpx.get(f"{backend.url}/v1/status", timeout=2).json()
        except httpx.HTTPError:
            status = None
        if status is not None:
            if status["loaded"]:
                break
            seen_loading = True
        assert time.monotonic() < deadline, backend.log()
        time.sleep(0.05)
    backend.wait_ready()
    # One measured reply (greedy: it makes its 8 tokens), so the estimate has a basis.
    measured = httpx.post(
        f"{backend.url}/v1/chat/completions",
        json={"messages": [LONG], "max_tokens": 8, "temperature": 0},
        timeout=60,
    )
    assert measured.status_code == 200, measured.text

    running_lines: list[str] = []
    running_started = threading.Event()
    leave_running = threading.Event()
    runner = threading.Thread(
        target=_stream_lines,
        args=(
            backend.url,
            # Greedy and far longer than the test: it still has most of its tokens left when
            # the others arrive, however fast the engine (the test leaves it once they wait).
            {
                "messages": [LONG],
                "max_tokens": 3000,
                "stream": True,
                "temperature": 0,
                "ignore_eos": True,
            },
            running_lines,
            running_started,
            leave_running,
        ),
    )
    runner.start()
    assert running_started.wait(60)

    queued_lines: list[str] = []
    queued_started = threading.Event()
    queued = threading.Thread(
        target=_stream_lines,
        args=(
            backend.url,
            {"messages": [LONG], "max_tokens": 4, "stream": True},
            queued_lines,
            queued_started,
        ),
    )
    queued.start()
    _wait_for_queue(backend.url, 1)  # first in the queue, before the two below

    http = HttpChatService(backend.url)
    conversation = http.create_conversation(params=GenerationParams(max_new_tokens=4))
    assert conversation.id is not None
    events: list[Any] = []
    texts: list[str] = []

    heard_wait = threading.Event()

    def converse() -> None:
        for event in http.send_message(conversation.id or "", "Hi"):
            events.append(event)
            if event.type is ReplyEventType.WAITING:
                heard_wait.set()

    def official() -> None:
        client = openai.OpenAI(base_url=f"{backend.url}/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="SmolLM2-135M-Instruct",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=4,
            stream=True,
        )
        texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))

    others = [threading.Thread(target=converse), threading.Thread(target=official)]
    for thread in others:
        thread.start()
    status = _wait_for_queue(backend.url, 3)  # the status while all three wait
    # Leave only once the waiting clients have heard that they wait: the queue then empties in
    # a few steps, and a stream that had not yet sent its wait would have none left to send.
    deadline = time.monotonic() + 60
    while not (heard_wait.is_set() and any(x.startswith(": waiting ") for x in queued_lines)):
        assert time.monotonic() < deadline, (queued_lines, events)
        time.sleep(0.05)
    leave_running.set()  # the running reply's client leaves; its place frees for the queue
    for thread in (runner, queued, *others):
        thread.join(120)
    http.close()

    assert seen_loading, "the status route said loaded: false while the model loaded"
    assert status["loaded"] and status["running"] == 1 and status["queued"] == 3, status
    assert status["estimate_s"] is not None and status["estimate_s"] > 0
    first_data = next(i for i, line in enumerate(queued_lines) if line.startswith("data:"))
    comments = [line for line in queued_lines[:first_data] if line.startswith(": waiting ")]
    assert comments, queued_lines[:first_data]
    wait = json.loads(comments[0].removeprefix(": waiting "))
    assert wait["phase"] == "queued" and wait["queue_position"] == 1
    assert wait["eta_s"] > 0, (comments, status, running_lines[-3:])
    assert "data: [DONE]" in queued_lines
    waits = [e for e in events if e.type is ReplyEventType.WAITING]
    assert waits and waits[0].phase is WaitPhase.QUEUED and waits[0].queue_position
    assert events[-1].type is ReplyEventType.DONE
    assert texts and texts[0]  # the official client reads past the comments
