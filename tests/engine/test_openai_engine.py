"""The openai engine against a loopback upstream whose failures the test chooses.

The happy paths against real model servers (llama-cpp-python, another chatbot serve) are in
tests/scaleout/test_openai_upstreams.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from chatbot.config import EngineKind, EngineSettings
from chatbot.domain import FinishReason, GenerationParams, Message
from chatbot.engine import create_engine
from chatbot.engine.openai_engine import DEFAULT_CONTEXT_WINDOW, OpenAIEngine
from chatbot.engine.upstream import api_root
from chatbot.errors import (
    ConfigurationError,
    InvalidRequestError,
    OverloadedError,
    UnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from tests.engine.fault_upstream import MODEL, WINDOW, UpstreamLog, free_port, running_upstream

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


def ask(engine: OpenAIEngine, behaviour: str, params: GenerationParams = PARAMS) -> list[str]:
    return list(engine.start([Message.system("be brief"), Message.user(behaviour)], params))


def test_streams_chunk_by_chunk_with_upstream_usage(
    engine: OpenAIEngine, upstream: tuple[str, UpstreamLog]
) -> None:
    generation = engine.start([Message.user("ok")], GenerationParams(max_new_tokens=5, stop=("x",)))
    assert list(generation) == ["Hello", ", ", "wor", "ld"]
    assert generation.outcome is not None
    assert generation.outcome.finish_reason is FinishReason.STOP
    assert generation.outcome.usage.prompt_tokens == 21
    assert generation.outcome.usage.completion_tokens == 4
    body, auth = upstream[1].bodies[-1], upstream[1].authorization[-1]
    assert body["model"] == MODEL and body["stream"] is True and body["max_tokens"] == 5
    assert body["stop"] == ["x"] and body["stream_options"] == {"include_usage": True}
    assert auth == "Bearer sk-upstream"


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
        ask(engine, "ok")
        assert upstream[1].bodies[-1]["model"] == "other"
    finally:
        engine.close()


def test_length_finish_and_counted_usage(engine: OpenAIEngine) -> None:
    generation = engine.start([Message.user("no-usage")], PARAMS)
    assert generation.text() == "Hello, world"
    assert generation.outcome is not None
    assert generation.outcome.usage.completion_tokens == 4  # counted: one per chunk
    assert generation.outcome.usage.prompt_tokens > 0  # estimated
    generation = engine.start([Message.user("length")], PARAMS)
    generation.text()
    assert generation.outcome is not None
    assert generation.outcome.finish_reason is FinishReason.LENGTH


def test_upstream_that_ignores_stream_answers_whole(engine: OpenAIEngine) -> None:
    generation = engine.start([Message.user("json")], PARAMS)
    assert generation.text() == "whole"
    assert generation.outcome is not None
    assert generation.outcome.finish_reason is FinishReason.LENGTH
    assert generation.outcome.usage.completion_tokens == 2


@pytest.mark.parametrize(
    ("status", "error", "http"),
    [
        ("400", InvalidRequestError, 400),
        ("422", InvalidRequestError, 400),
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
    with pytest.raises(error) as caught:  # raised by start(), before any text
        engine.start([Message.user(status)], PARAMS)
    assert getattr(caught.value, "status_code", None) == http
    assert str(caught.value)


def test_context_error_keeps_the_upstream_message(engine: OpenAIEngine) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        engine.start([Message.user("400")], PARAMS)
    assert caught.value.message == "upstream says 400"
    assert caught.value.param == "messages" and caught.value.code == "context_length_exceeded"


def test_overload_carries_retry_after(engine: OpenAIEngine) -> None:
    with pytest.raises(OverloadedError) as caught:
        engine.start([Message.user("429")], PARAMS)
    assert caught.value.retry_after_s == 7


def test_an_empty_stream_is_asked_again_without_streaming(
    engine: OpenAIEngine, upstream: tuple[str, UpstreamLog]
) -> None:
    generation = engine.start([Message.user("empty-400")], PARAMS)
    with pytest.raises(InvalidRequestError, match="upstream says 400"):
        list(generation)
    assert upstream[1].bodies[-1]["stream"] is False
    assert "stream_options" not in upstream[1].bodies[-1]
    generation = engine.start([Message.user("empty-ok")], PARAMS)
    assert generation.text() == "whole"


@pytest.mark.parametrize("behaviour", ["cut", "garbage", "error-event"])
def test_broken_streams_are_upstream_errors(engine: OpenAIEngine, behaviour: str) -> None:
    generation = engine.start([Message.user(behaviour)], PARAMS)
    with pytest.raises(UpstreamError) as caught:
        list(generation)
    assert caught.value.status_code == 502
    assert generation.outcome is not None
    assert generation.outcome.finish_reason is FinishReason.ERROR


def test_silent_upstream_times_out(engine: OpenAIEngine) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        engine.start([Message.user("hang-head")], PARAMS)
    assert time.monotonic() - started < 10
    generation = engine.start([Message.user("hang-stream")], PARAMS)
    with pytest.raises(UpstreamTimeoutError):
        list(generation)


def test_cancel_closes_the_upstream_request(
    engine: OpenAIEngine, upstream: tuple[str, UpstreamLog]
) -> None:
    slow = OpenAIEngine(EngineSettings(engine=EngineKind.OPENAI, openai_base_url=upstream[0]))
    try:
        upstream[1].disconnected.clear()
        generation = slow.start([Message.user("hang-stream")], PARAMS)
        chunks = iter(generation)
        assert next(chunks) == "Hello"
        generation.cancel()  # the upstream sends nothing for 30 s: only closing ends this
        assert list(chunks) == []
        assert generation.outcome is not None
        assert generation.outcome.finish_reason is FinishReason.CANCELLED
        assert upstream[1].disconnected.wait(5), "the upstream request stayed open"
    finally:
        slow.close()


def test_connection_refused_is_retried_then_503() -> None:
    port = free_port()
    engine = OpenAIEngine(
        EngineSettings(
            engine=EngineKind.OPENAI, openai_base_url=f"http://127.0.0.1:{port}/v1", model="m"
        )
    )
    with pytest.raises(UnavailableError, match="cannot reach"):
        engine.load()
    # the upstream comes up during the backoff: the refused attempts were safe to repeat
    later = running_upstream(port)

    def start_later() -> None:
        time.sleep(0.3)
        later.__enter__()

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        engine.load()
        assert engine.model_id == "m"
        assert "".join(ask(engine, "ok")) == "Hello, world"
    finally:
        thread.join()
        engine.close()
        later.__exit__(None, None, None)


def test_close_cancels_replies_in_flight(upstream: tuple[str, UpstreamLog]) -> None:
    engine = OpenAIEngine(EngineSettings(engine=EngineKind.OPENAI, openai_base_url=upstream[0]))
    generation = engine.start([Message.user("hang-stream")], PARAMS)
    engine.close()
    assert "".join(generation) in ("", "Hello")
    assert generation.outcome is not None
    assert generation.outcome.finish_reason is FinishReason.CANCELLED


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
    with pytest.raises(InvalidRequestError):
        engine.start([], PARAMS)
