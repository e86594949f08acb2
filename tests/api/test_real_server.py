"""The real-server tier: ``chatbot serve`` in a subprocess, driven by real clients."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
import requests
from openai.types.chat import ChatCompletionMessageParam

from tests.fixtures.prompts import LONG_PROMPT
from tests.fixtures.servers import SCRIPTED, BackendProcess
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.slow

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
MODEL = "SmolLM2-135M-Instruct"  # the embedded model's name; any other is a 404


def metric(base_url: str, name: str) -> float:
    for line in httpx.get(f"{base_url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_articles_client_code_works(backend_server: BackendProcess) -> None:
    # The seed frontend's own shape: requests.post(url, json=payload).json()
    assert requests.get(f"{backend_server.url}/").json() == {"status": "OK!"}
    secret = "Hello! My locker code is zebra-4242."
    payload = {"past_user_inputs": [], "generated_responses": [], "user_input": secret}
    reply = requests.post(f"{backend_server.url}/chat", json=payload).json()
    assert isinstance(reply, str) and reply
    assert "zebra-4242" not in backend_server.log()  # no message text in the logs at INFO


def test_official_openai_client(backend_server: BackendProcess) -> None:
    client = openai.OpenAI(base_url=f"{backend_server.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    completion = client.chat.completions.create(
        model=MODEL,
        messages=HI,
        max_tokens=3,
        temperature=0,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    stream = client.chat.completions.create(
        model=MODEL,
        messages=HI,
        max_completion_tokens=3,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion.choices[0].message.content  # greedy: same reply
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=HI, n=2)
    assert refused.value.body["param"] == "n"  # type: ignore[index,unused-ignore]


def test_overload_is_429_with_retry_after_and_disconnect_cancels(
    start_backend: Callable[..., BackendProcess],
) -> None:
    backend = start_backend(
        CHATBOT_MAX_CONCURRENT_REQUESTS="1",
        CHATBOT_MAX_QUEUED_REQUESTS="0",
        CHATBOT_MAX_TOKENS_CAP="2000",
        CHATBOT_WARMUP="false",
    )
    url = f"{backend.url}/v1/chat/completions"
    long = [{"role": "user", "content": LONG_PROMPT}]
    body = {
        "messages": long,
        "max_tokens": 2000,
        "stream": True,
        "temperature": 0,
        "ignore_eos": True,
    }
    with httpx.stream("POST", url, json=body, timeout=60) as long_stream:
        assert long_stream.status_code == 200
        lines = long_stream.iter_lines()
        while not next(lines).startswith('data: {"id"'):
            pass  # the first chunk: the stream holds the only place now
        refused = httpx.post(url, json={"messages": HI, "max_tokens": 2})
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["type"] == "rate_limit_error"
    # Leaving the stream closed the connection: the generation is cancelled and the place freed.
    deadline = time.monotonic() + 30
    while metric(backend.url, "chatbot_requests_in_flight") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(backend.url, "chatbot_requests_in_flight") == 0
    assert metric(backend.url, 'chatbot_generations_cancelled_total{reason="disconnect"}') == 1
    assert metric(backend.url, "chatbot_tokens_after_cancel_total") <= 3
    generated = metric(backend.url, 'chatbot_tokens_generated_total{endpoint="chat_completions"}')
    assert generated < 2000
    after = httpx.post(url, json={"messages": HI, "max_tokens": 2, "temperature": 0}, timeout=60)
    assert after.status_code == 200


def test_sigterm_drains_then_exits_zero(start_backend: Callable[..., BackendProcess]) -> None:
    backend = start_backend(  # the drain is the subject, not the model
        CHATBOT_SHUTDOWN_GRACE_S="2", CHATBOT_MAX_TOKENS_CAP="4000", **SCRIPTED
    )
    url = f"{backend.url}/v1/chat/completions"
    events: list[str] = []
    started = threading.Event()

    def read_stream() -> None:
        # 4000 tokens past the end-of-text token run far past the 2 s grace, so the stream
        # must end with the drain's error event (a reply that ended by itself proves nothing).
        count = [{"role": "user", "content": LONG_PROMPT}]
        body = {
            "messages": count,
            "max_tokens": 4000,
            "stream": True,
            "temperature": 0,
            "ignore_eos": True,
        }
        with httpx.stream("POST", url, json=body, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    started.set()

    reader = threading.Thread(target=read_stream)
    reader.start()
    assert started.wait(60)
    backend.process.send_signal(signal.SIGTERM)
    # Until the signal is handled: then not ready, draining.
    wait_until(lambda: httpx.get(f"{backend.url}/readyz").status_code == 503, backend.log)
    refused = httpx.post(url, json={"messages": HI})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
    reader.join(60)
    assert backend.process.wait(60) == 0
    last = json.loads(events[-1])
    assert last["error"]["code"] == "shutting_down"  # ended with an error event, not a cut


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def test_streams_cost_no_threads_and_conversation_replies_are_measured(
    start_backend: Callable[..., BackendProcess],
) -> None:
    """16 concurrent streams run on the event loop: the thread count is the idle one."""
    backend = start_backend(CHATBOT_MAX_CONCURRENT_REQUESTS="16", CHATBOT_MAX_QUEUED_REQUESTS="0")
    body = {"model": MODEL, "messages": HI, "max_tokens": 24, "temperature": 0, "stream": True}
    with httpx.Client(base_url=backend.url, timeout=120) as client:
        # Warm every lazily started pool first (the prompt worker, the store's workers).
        cid = client.post("/v1/conversations", json={}).json()["id"]
        client.post(f"/v1/conversations/{cid}/messages", json={"content": "Hi"})
        client.post("/v1/chat/completions", json={**body, "stream": False})
        idle = _threads(backend.process.pid)
        busy: list[int] = []
        started = threading.Barrier(17)

        def stream() -> None:
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                started.wait(60)
                for _ in response.iter_lines():
                    pass

        readers = [threading.Thread(target=stream) for _ in range(16)]
        for reader in readers:
            reader.start()
        started.wait(60)
        busy.append(_threads(backend.process.pid))
        for reader in readers:
            reader.join(120)
        assert busy == [idle], f"threads idle {idle}, with 16 streams {busy}"
        # The conversation reply above went through the same runner: it is in the metrics.
        assert metric(backend.url, 'chatbot_tokens_generated_total{endpoint="conversations"}') > 0
        ttft = 'chatbot_time_to_first_token_seconds_count{endpoint="conversations"}'
        assert metric(backend.url, ttft) == 1
