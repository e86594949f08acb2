"""The openai engine against real OpenAI-compatible servers on loopback.

(a) llama-cpp-python's server on the embedded GGUF: streaming passes through, stopping closes
the request, the upstream going away is a clear 503 and it recovers when the upstream returns.
(b) another ``chatbot serve``: the same engine, and a whole ``chatbot serve`` with
CHATBOT_ENGINE=openai in front of it (seed /chat, OpenAI API, conversations).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chatbot.config import EngineKind, EngineSettings
from chatbot.domain import FinishReason, GenerationParams, Message
from chatbot.engine.openai_engine import OpenAIEngine
from chatbot.errors import InvalidRequestError, UnavailableError
from tests.fixtures.engines import StartReply
from tests.fixtures.prompts import LONG_PROMPT
from tests.fixtures.servers import BackendProcess
from tests.scaleout.upstreams import LlamaServer

pytestmark = pytest.mark.slow
SHORT = GenerationParams(max_new_tokens=12)
LONG = GenerationParams(max_new_tokens=400)
HELLO = [Message.user("Say hello.")]


def engine_for(url: str, **settings: Any) -> OpenAIEngine:
    return OpenAIEngine(EngineSettings(engine=EngineKind.OPENAI, openai_base_url=url, **settings))


def non_streamed(url: str, max_tokens: int) -> str:
    body = {
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": False,
    }
    answer = httpx.post(f"{url}/chat/completions", json=body, timeout=120).json()
    return str(answer["choices"][0]["message"]["content"])


def check_passes_through(start_reply: StartReply, engine: OpenAIEngine, upstream_v1: str) -> None:
    generation = start_reply(engine, HELLO, SHORT)
    pieces = list(generation)
    assert len(pieces) >= 2, "the reply came in one piece: not streamed"
    assert generation.outcome is not None
    assert generation.outcome.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    assert 1 <= generation.outcome.usage.completion_tokens <= 12
    assert generation.outcome.usage.prompt_tokens > 0
    assert "".join(pieces) == non_streamed(upstream_v1, 12)  # greedy: the same reply


# -- (a) llama-cpp-python's OpenAI server ------------------------------------------------------
@pytest.fixture
def llama_engine(llama_server: LlamaServer) -> Iterator[OpenAIEngine]:
    engine = engine_for(llama_server.url, openai_timeout_s=60)
    yield engine
    engine.close()


def test_llama_server_streams_through(
    start_reply: StartReply, llama_engine: OpenAIEngine, llama_server: LlamaServer
) -> None:
    models = httpx.get(f"{llama_server.url}/models", timeout=10).json()
    assert llama_engine.model_id == models["data"][0]["id"]
    check_passes_through(start_reply, llama_engine, llama_server.url)


def test_llama_server_stop_closes_the_request(
    start_reply: StartReply, llama_engine: OpenAIEngine
) -> None:
    generation = start_reply(llama_engine, HELLO, LONG)
    chunks = iter(generation)
    next(chunks)
    stopped_at = time.monotonic()
    generation.cancel()
    assert list(chunks) == []
    # llama.cpp's server answers one request at a time: the next one is served at once only if
    # the cancelled one stopped (400 tokens would take several seconds here)
    assert start_reply(llama_engine, HELLO, GenerationParams(max_new_tokens=2)).text()
    print(f"llama server free again {time.monotonic() - stopped_at:.2f}s after stop")


def test_llama_server_context_error_is_a_400(
    start_reply: StartReply, llama_engine: OpenAIEngine
) -> None:
    # llama-cpp-python answers an over-long streamed prompt with an empty 200 stream; the
    # engine asks again without streaming and gets the 400 with the server's own message
    with pytest.raises(InvalidRequestError, match="context") as caught:
        start_reply(llama_engine, [Message.user("word " * 5000)], SHORT).text()
    assert caught.value.status_code == 400


def test_upstream_down_is_503_and_recovers(
    start_reply: StartReply, llama_server: LlamaServer
) -> None:
    engine = engine_for(llama_server.url)
    try:
        engine.load()
        llama_server.stop()
        # A bounded few retries, then a clear error (an endless retry would hang the test).
        with pytest.raises(UnavailableError, match="cannot reach"):
            start_reply(engine, HELLO, SHORT)
        llama_server.start()
        assert start_reply(engine, HELLO, SHORT).text()
    finally:
        engine.close()
        if llama_server.process is None:
            llama_server.start()


# -- (b) another chatbot serve -------------------------------------------------------------------
@pytest.fixture(scope="module")
def limited_upstream() -> Iterator[BackendProcess]:
    """A backend that generates one reply at a time and queues none: busy means 429."""
    with BackendProcess(
        {"CHATBOT_MAX_CONCURRENT_REQUESTS": "1", "CHATBOT_MAX_QUEUED_REQUESTS": "0"}
    ) as backend:
        yield backend


@pytest.fixture(scope="module")
def front(limited_upstream: BackendProcess) -> Iterator[BackendProcess]:
    """``chatbot serve`` with CHATBOT_ENGINE=openai in front of the other one."""
    upstream = f"{limited_upstream.url}/v1"
    with BackendProcess(
        {"CHATBOT_ENGINE": "openai", "CHATBOT_OPENAI_BASE_URL": upstream}
    ) as backend:
        yield backend


def wait_until_free(upstream_url: str, timeout_s: float = 15) -> float:
    """Seconds until the upstream accepts a new reply (it answers 429 while still busy)."""
    started = time.monotonic()
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    while time.monotonic() - started < timeout_s:
        status = httpx.post(f"{upstream_url}/v1/chat/completions", json=body, timeout=60)
        if status.status_code == 200:
            return time.monotonic() - started
        assert status.status_code == 429, status.text
        time.sleep(0.1)
    pytest.fail("the upstream kept generating after the request was stopped")


def test_chatbot_upstream_streams_through(start_reply: StartReply, limited_upstream: Any) -> None:
    engine = engine_for(f"{limited_upstream.url}/v1")
    try:
        check_passes_through(start_reply, engine, f"{limited_upstream.url}/v1")
        info = httpx.get(f"{limited_upstream.url}/v1/models", timeout=10).json()
        assert engine.model_id == info["data"][0]["id"]
    finally:
        engine.close()


def test_chatbot_upstream_stop_frees_the_upstream(
    start_reply: StartReply, limited_upstream: Any
) -> None:
    engine = engine_for(f"{limited_upstream.url}/v1")
    try:
        generation = start_reply(engine, HELLO, LONG)
        next(iter(generation))
        generation.cancel()
        assert generation.text() == ""  # a closed stream yields nothing more
        freed = wait_until_free(limited_upstream.url)
        print(f"chatbot upstream free {freed:.2f}s after stop")
    finally:
        engine.close()


def test_front_serves_the_seed_route(front: Any) -> None:
    assert httpx.get(f"{front.url}/", timeout=10).json() == {"status": "OK!"}
    body = {"past_user_inputs": ["Hi"], "generated_responses": ["Hello!"], "user_input": "Bye"}
    reply = httpx.post(f"{front.url}/chat", json=body, timeout=120)
    assert reply.status_code == 200 and isinstance(reply.json(), str) and reply.json()


def test_front_serves_openai_chat(front: Any, limited_upstream: Any) -> None:
    models = httpx.get(f"{front.url}/v1/models", timeout=10).json()
    upstream_models = httpx.get(f"{limited_upstream.url}/v1/models", timeout=10).json()
    assert models["data"][0]["id"] == upstream_models["data"][0]["id"]
    direct = non_streamed(f"{limited_upstream.url}/v1", 8)
    assert non_streamed(f"{front.url}/v1", 8) == direct
    body = {
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
    }
    texts = []
    with httpx.stream("POST", f"{front.url}/v1/chat/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data:") and line.strip() != "data: [DONE]":
                for choice in json.loads(line[5:]).get("choices", []):
                    texts.append((choice.get("delta") or {}).get("content") or "")
    assert "".join(texts) == direct


def test_front_serves_a_conversation(front: Any) -> None:
    created = httpx.post(
        f"{front.url}/v1/conversations", json={"title": "via upstream"}, timeout=10
    )
    assert created.status_code == 201
    cid = created.json()["id"]
    answer = httpx.post(
        f"{front.url}/v1/conversations/{cid}/messages",
        json={"content": "Say hello.", "stream": False},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["role"] == "assistant" and answer.json()["content"]
    stored = httpx.get(f"{front.url}/v1/conversations/{cid}", timeout=10).json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]


def test_front_client_disconnect_frees_the_upstream(front: Any, limited_upstream: Any) -> None:
    wait_until_free(limited_upstream.url)
    body = {
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 400,
        "stream": True,
    }
    with httpx.stream("POST", f"{front.url}/v1/chat/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data:") and '"content"' in line:
                break  # the first text: now hang up
    freed = wait_until_free(limited_upstream.url)
    print(f"upstream free {freed:.2f}s after the client of the front hung up")


def test_front_maps_upstream_overload(front: Any, limited_upstream: Any) -> None:
    wait_until_free(limited_upstream.url)
    body = {
        "messages": [{"role": "user", "content": LONG_PROMPT}],
        "max_tokens": 1000,
        "temperature": 0,
        "stream": True,
    }
    hello = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    with httpx.stream(
        "POST", f"{limited_upstream.url}/v1/chat/completions", json=body, timeout=120
    ) as busy:
        lines = busy.iter_lines()  # kept referenced: dropping it would close the stream
        for line in lines:
            if line.startswith("data:"):
                break  # the upstream's only place is taken
        direct = httpx.post(f"{limited_upstream.url}/v1/chat/completions", json=hello, timeout=60)
        assert direct.status_code == 429, "precondition: the upstream is busy"
        reply = httpx.post(f"{front.url}/v1/chat/completions", json=hello, timeout=60)
    assert reply.status_code == 429, reply.text
    assert reply.json()["error"]["message"]
    assert reply.headers.get("retry-after")


def test_front_passes_structured_output_upstream(front: Any, limited_upstream: Any) -> None:
    """The openai engine hands the schema upstream (here: another chatbot serve enforcing it)."""
    wait_until_free(limited_upstream.url)  # the overload test before may still hold its place
    url = f"{front.url}/v1/chat/completions"
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 30}},
                "required": ["city"],
            },
        },
    }
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    common = {"messages": ask, "temperature": 0, "max_tokens": 48}
    called = httpx.post(
        url, json={**common, "tools": [weather], "tool_choice": "required"}, timeout=120
    ).json()
    (call,) = called["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"])["city"], str)
    schema = {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    answered = httpx.post(
        url, json={**common, "response_format": response_format}, timeout=120
    ).json()
    assert json.loads(answered["choices"][0]["message"]["content"])["answer"] in ("yes", "no")
