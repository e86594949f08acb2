"""The openai engine against a loopback upstream whose failures the test chooses.

The happy paths against real model servers (llama-cpp-python, another chatbot serve) are in
tests/scaleout/test_openai_upstreams.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncGenerator, Iterator

import pytest

from chatbot.config import EngineKind, EngineSettings
from chatbot.domain import FinishReason, GenerationParams, Message
from chatbot.engine import create_engine, openai_engine
from chatbot.engine.base import Chunk, collect
from chatbot.engine.openai_engine import DEFAULT_CONTEXT_WINDOW, OpenAIEngine, api_root
from chatbot.engine.tool_request import ToolRequest, takes_native_tools
from chatbot.errors import (
    ConfigurationError,
    ContextOverflowError,
    InvalidRequestError,
    OverloadedError,
    PayloadTooLargeError,
    UnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from tests.engine.fault_upstream import (
    CALL_ARGUMENTS,
    HANG_S,
    MODEL,
    WINDOW,
    UpstreamLog,
    free_port,
    running_upstream,
)
from tests.fixtures.engines import run_async

PARAMS = GenerationParams(max_new_tokens=8)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, UpstreamLog]]:
    with running_upstream() as running:
        yield running


@pytest.fixture
def engine(upstream: tuple[str, UpstreamLog]) -> Iterator[OpenAIEngine]:
    settings = EngineSettings(
        engine=EngineKind.OPENAI,
        openai_base_url=upstream[0],
        openai_timeout_s=1.0,
        openai_api_key="sk-upstream",
    )
    engine = create_engine(settings)
    assert isinstance(engine, OpenAIEngine)
    yield engine
    engine.close()


def reply(
    engine: OpenAIEngine, behaviour: str, params: GenerationParams = PARAMS
) -> tuple[str, Chunk]:
    """The whole text and the final chunk; the last user message picks the behaviour."""
    return run_async(collect(engine.generate([Message.user(behaviour)], params)))


async def chunks_until_error(stream: AsyncGenerator[Chunk]) -> tuple[list[Chunk], BaseException]:
    seen: list[Chunk] = []
    try:
        async for chunk in stream:
            seen.append(chunk)
    except Exception as exc:
        return seen, exc
    raise AssertionError("the stream ended without an error")


async def first_chunk_or_error(engine: OpenAIEngine, behaviour: str) -> Chunk:
    """Raises what the engine raises before its first chunk."""
    stream = engine.generate([Message.user(behaviour)], PARAMS)
    try:
        return await anext(stream)
    finally:
        await stream.aclose()


def test_streams_chunk_by_chunk_with_upstream_usage(
    engine: OpenAIEngine, upstream: tuple[str, UpstreamLog]
) -> None:
    async def chunks() -> list[Chunk]:
        stream = engine.generate(
            [Message.system("be brief"), Message.user("ok")],
            GenerationParams(max_new_tokens=5, stop=("x",)),
        )
        return [chunk async for chunk in stream]

    seen = run_async(chunks())
    assert seen[0].text == "" and not seen[0].finished  # accepted: the upstream answered
    assert [c.text for c in seen[1:-1]] == ["Hello", ", ", "wor", "ld"]
    assert [c.usage.completion_tokens for c in seen[1:-1]] == [1, 2, 3, 4]
    last = seen[-1]
    assert last.finish_reason is FinishReason.STOP and last.text == ""
    assert last.usage.prompt_tokens == 21
    assert last.usage.completion_tokens == 4
    body, auth = upstream[1].bodies[-1], upstream[1].authorization[-1]
    assert body["model"] == MODEL and body["stream"] is True and body["max_tokens"] == 5
    assert body["stop"] == ["x"] and body["stream_options"] == {"include_usage": True}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert auth == "Bearer sk-upstream"


def test_ignore_eos_is_passed_on_in_the_body(
    engine: OpenAIEngine, upstream: tuple[str, UpstreamLog]
) -> None:
    reply(engine, "ok", GenerationParams(max_new_tokens=5, ignore_eos=True))
    assert upstream[1].bodies[-1]["ignore_eos"] is True  # vLLM's and llama-server's name
    reply(engine, "ok")
    assert "ignore_eos" not in upstream[1].bodies[-1]  # not sent when not asked


def test_learns_model_and_window_from_the_upstream(engine: OpenAIEngine) -> None:
    assert engine.model_id == MODEL
    assert engine.context_window == WINDOW


def test_configured_model_and_window_win(upstream: tuple[str, UpstreamLog]) -> None:
    engine = OpenAIEngine(
        EngineSettings(
            engine=EngineKind.OPENAI, openai_base_url=upstream[0], model="other", context_window=512
        )
    )
    try:
        assert engine.model_id == "other" and engine.context_window == 512
        reply(engine, "ok")
        assert upstream[1].bodies[-1]["model"] == "other"
    finally:
        engine.close()


def test_length_finish_and_counted_usage(engine: OpenAIEngine) -> None:
    text, last = reply(engine, "no-usage")
    assert text == "Hello, world"
    assert last.usage.completion_tokens == 4  # counted: one per chunk
    assert last.usage.prompt_tokens > 0  # estimated
    _, last = reply(engine, "length")
    assert last.finish_reason is FinishReason.LENGTH


def test_upstream_that_ignores_stream_answers_whole(engine: OpenAIEngine) -> None:
    text, last = reply(engine, "json")
    assert text == "whole"
    assert last.finish_reason is FinishReason.LENGTH
    assert last.usage.completion_tokens == 2


@pytest.mark.parametrize(
    ("status", "error", "http"),
    [
        ("400", InvalidRequestError, 400),
        ("422", InvalidRequestError, 400),
        ("413", PayloadTooLargeError, 413),
        ("429", OverloadedError, 429),
        ("401", UpstreamError, 502),
        ("404", UpstreamError, 502),
        ("500", UpstreamError, 502),
        ("502", UpstreamError, 502),
        ("503", UnavailableError, 503),
        ("504", UpstreamTimeoutError, 504),
    ],
)
def test_upstream_status_maps_to_our_errors(
    engine: OpenAIEngine, status: str, error: type[Exception], http: int
) -> None:
    with pytest.raises(error) as caught:  # raised before the first chunk
        run_async(first_chunk_or_error(engine, status))
    assert getattr(caught.value, "status_code", None) == http
    assert str(caught.value)


def test_context_error_keeps_the_upstream_message(engine: OpenAIEngine) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        run_async(first_chunk_or_error(engine, "400"))
    assert isinstance(caught.value, ContextOverflowError)  # told by the upstream's code
    assert caught.value.message == "upstream says 400"
    assert caught.value.param == "messages" and caught.value.code == "context_length_exceeded"
    with pytest.raises(InvalidRequestError) as caught:
        run_async(first_chunk_or_error(engine, "422"))
    assert not isinstance(caught.value, ContextOverflowError)
    assert caught.value.message == "upstream says 422" and caught.value.param == "messages"


def test_overload_carries_retry_after(
    engine: OpenAIEngine, upstream: tuple[str, UpstreamLog]
) -> None:
    asked_before = len(upstream[1].bodies)
    with pytest.raises(OverloadedError) as caught:
        run_async(first_chunk_or_error(engine, "429"))
    assert caught.value.retry_after_s == 7
    # Handed to our caller as it came, not slept out and asked again by a retry.
    assert len(upstream[1].bodies) == asked_before + 1


def test_an_empty_stream_is_asked_again_without_streaming(
    engine: OpenAIEngine, upstream: tuple[str, UpstreamLog]
) -> None:
    with pytest.raises(InvalidRequestError, match="upstream says 400"):
        reply(engine, "empty-400")
    assert upstream[1].bodies[-1]["stream"] is False
    assert "stream_options" not in upstream[1].bodies[-1]
    text, last = reply(engine, "empty-ok")
    assert text == "whole" and last.finish_reason is FinishReason.LENGTH


@pytest.mark.parametrize("behaviour", ["cut", "garbage", "error-event"])
def test_broken_streams_are_upstream_errors(engine: OpenAIEngine, behaviour: str) -> None:
    stream = engine.generate([Message.user(behaviour)], PARAMS)
    seen, error = run_async(chunks_until_error(stream))
    assert isinstance(error, UpstreamError)
    assert error.status_code == 502
    assert seen and not any(c.finished for c in seen)  # accepted, then the error ends it


def test_silent_upstream_times_out(engine: OpenAIEngine, upstream: tuple[str, UpstreamLog]) -> None:
    hung = len(upstream[1].bodies)
    with pytest.raises(UpstreamTimeoutError):
        run_async(first_chunk_or_error(engine, "hang-head"))
    # Our timeout ended it, while the upstream was still silent (not its 30 s running out).
    assert hung not in upstream[1].ran_out
    stream = engine.generate([Message.user("hang-stream")], PARAMS)
    seen, error = run_async(chunks_until_error(stream))
    assert isinstance(error, UpstreamTimeoutError)
    assert [c.text for c in seen] == ["", "Hello"]


def test_closing_the_stream_closes_the_upstream_request(upstream: tuple[str, UpstreamLog]) -> None:
    slow = OpenAIEngine(EngineSettings(engine=EngineKind.OPENAI, openai_base_url=upstream[0]))

    async def read_then_leave() -> None:
        stream = slow.generate([Message.user("hang-stream")], PARAMS)
        assert (await anext(stream)).text == ""
        assert (await anext(stream)).text == "Hello"
        await stream.aclose()  # the upstream sends nothing for 30 s: only closing ends this
        with pytest.raises(StopAsyncIteration):
            await anext(stream)

    try:
        upstream[1].disconnected.clear()
        hung = len(upstream[1].bodies)
        run_async(read_then_leave())
        assert upstream[1].disconnected.wait(HANG_S), "the upstream request stayed open"
        assert hung not in upstream[1].ran_out, "the stream ended by the upstream's silence"
    finally:
        slow.close()


def test_cancelling_the_reading_task_closes_the_upstream_request(
    upstream: tuple[str, UpstreamLog],
) -> None:
    slow = OpenAIEngine(EngineSettings(engine=EngineKind.OPENAI, openai_base_url=upstream[0]))

    async def read_then_cancel() -> None:
        hello = asyncio.Event()

        async def read() -> None:
            async for chunk in slow.generate([Message.user("hang-stream")], PARAMS):
                if chunk.text:
                    hello.set()

        task = asyncio.create_task(read())
        await asyncio.wait_for(hello.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        upstream[1].disconnected.clear()
        run_async(read_then_cancel())
        assert upstream[1].disconnected.wait(HANG_S), "the upstream request stayed open"
    finally:
        slow.close()


def test_connection_refused_is_retried_then_503(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    engine = OpenAIEngine(
        EngineSettings(
            engine=EngineKind.OPENAI, openai_base_url=f"http://127.0.0.1:{port}/v1", model="m"
        )
    )
    with pytest.raises(UnavailableError, match="cannot reach"):
        engine.load()
    with pytest.raises(UnavailableError, match="cannot reach"):
        run_async(first_chunk_or_error(engine, "ok"))
    # the upstream comes up during the backoff: the refused attempts were safe to repeat.
    # More attempts than shipped (httpx doubles its wait each time: about a minute in all), so
    # the upstream's start falls inside the backoff however busy the machine is.
    monkeypatch.setattr(openai_engine, "CONNECT_RETRIES", 8)
    later = running_upstream(port)

    def start_later() -> None:
        time.sleep(0.3)
        later.__enter__()

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        engine.load()
        assert engine.model_id == "m"
        assert reply(engine, "ok")[0] == "Hello, world"
    finally:
        thread.join()
        engine.close()
        later.__exit__(None, None, None)


def test_close_cancels_replies_in_flight(upstream: tuple[str, UpstreamLog]) -> None:
    engine = OpenAIEngine(EngineSettings(engine=EngineKind.OPENAI, openai_base_url=upstream[0]))

    async def close_while_reading() -> tuple[str, Chunk]:
        stream = engine.generate([Message.user("hang-stream")], PARAMS)
        assert (await anext(stream)).text == ""  # the upstream answered; "Hello", then 30 s
        engine.close()
        return await asyncio.wait_for(collect(stream), 60)

    text, last = run_async(close_while_reading())
    assert text in ("", "Hello")
    assert last.finish_reason is FinishReason.CANCELLED


def test_one_engine_serves_several_event_loops(engine: OpenAIEngine) -> None:
    """A client per loop: a pool opened in one loop is never used from another."""
    assert reply(engine, "ok")[0] == "Hello, world"

    def in_a_thread() -> None:
        assert reply(engine, "ok")[0] == "Hello, world"

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(10)
    assert reply(engine, "ok")[0] == "Hello, world"


def test_settings_are_checked_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="CHATBOT_OPENAI_BASE_URL"):
        OpenAIEngine(EngineSettings(engine=EngineKind.OPENAI))
    with pytest.raises(ConfigurationError, match="CHATBOT_OPENAI_BASE_URL"):
        OpenAIEngine(EngineSettings(engine=EngineKind.OPENAI, openai_base_url="vllm:8000"))
    assert api_root("http://vllm:8000") == "http://vllm:8000/v1"
    assert api_root("http://vllm:8000/v1/") == "http://vllm:8000/v1"
    assert api_root("https://h/ollama/v1") == "https://h/ollama/v1"
    engine = OpenAIEngine(EngineSettings(engine=EngineKind.OPENAI, openai_base_url="http://h:1"))
    assert engine.context_window == DEFAULT_CONTEXT_WINDOW


def test_empty_messages_are_refused(engine: OpenAIEngine) -> None:
    async def first() -> Chunk:
        return await anext(engine.generate([], PARAMS))

    with pytest.raises(InvalidRequestError):
        run_async(first())


# -- tools passed upstream natively ------------------------------------------------------------
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def tool_request(behaviour: str) -> ToolRequest:
    """The client's own messages: a history with a call and its result, then the behaviour."""
    messages = (
        {"role": "user", "content": "Weather in Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c0", "type": "function", "function": {"name": "get_weather"}}],
        },
        {"role": "tool", "tool_call_id": "c0", "content": "sunny"},
        {"role": "user", "content": behaviour},
    )
    return ToolRequest(tools=(WEATHER,), tool_choice="required", messages=messages)


@pytest.mark.parametrize("behaviour", ["call", "call-json"])
def test_tools_go_upstream_unchanged_and_calls_come_back_as_text(
    engine: OpenAIEngine, upstream: tuple[str, UpstreamLog], behaviour: str
) -> None:
    """Streamed or whole, the upstream's calls come back in the generic format's JSON."""
    assert takes_native_tools(engine)
    tools = tool_request(behaviour)
    text, last = run_async(collect(engine.generate([Message.user(behaviour)], PARAMS, tools=tools)))
    body = upstream[1].bodies[-1]
    assert body["tools"] == [WEATHER] and body["tool_choice"] == "required"
    assert body["messages"] == list(tools.messages)
    arguments = "".join(CALL_ARGUMENTS)
    assert json.loads(text) == [{"name": "get_weather", "arguments": arguments}] * 2
    assert last.finished


def test_without_tools_the_request_is_as_before(
    engine: OpenAIEngine, upstream: tuple[str, UpstreamLog]
) -> None:
    text, _ = reply(engine, "ok")
    assert text == "Hello, world"
    assert "tools" not in upstream[1].bodies[-1]
    assert "tool_choice" not in upstream[1].bodies[-1]
