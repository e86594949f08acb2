"""The llama.cpp engine on the embedded GGUF: streaming, batching, stop, cancel, context."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatbot.config import EngineSettings
from chatbot.domain import FinishReason, GenerationParams, Message
from chatbot.engine import create_engine
from chatbot.errors import ConfigurationError, ContextOverflowError

pytest.importorskip("llama_cpp")

from chatbot.engine.llamacpp_engine import LlamaCppEngine
from tests.fixtures.engines import StartReply

PROMPTS = ["Hi", "What is the capital of France?", "Name three fruits."]


@pytest.fixture(scope="module")
def llama_engine() -> Iterator[LlamaCppEngine]:
    """Two sequences at most, so a third request also waits in the queue."""
    engine = LlamaCppEngine(EngineSettings(engine="llamacpp", max_batch_size=2))
    engine.load()
    yield engine
    engine.close()


def test_the_factory_builds_it_from_the_setting() -> None:
    engine = create_engine(EngineSettings(engine="llamacpp"))
    assert isinstance(engine, LlamaCppEngine)
    assert engine.model_id == "SmolLM2-135M-Instruct"


def test_a_model_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"\.gguf"):
        LlamaCppEngine(EngineSettings(engine="llamacpp", model=str(tmp_path)))


def test_a_reply_streams_with_usage(start_reply: StartReply, llama_engine: LlamaCppEngine) -> None:
    generation = start_reply(llama_engine, [Message.user("Hi")], GenerationParams(max_new_tokens=8))
    chunks = list(generation)
    assert chunks and "".join(chunks).strip()
    assert generation.outcome is not None
    usage = generation.outcome.usage
    assert usage.prompt_tokens > 5
    assert 1 <= usage.completion_tokens <= 8
    assert generation.outcome.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)


def test_ignore_eos_generates_to_the_limit(
    start_reply: StartReply, llama_engine: LlamaCppEngine
) -> None:
    params = GenerationParams(max_new_tokens=40, ignore_eos=True)
    generation = start_reply(llama_engine, [Message.user("Hi")], params)
    assert generation.text()
    assert generation.outcome is not None
    assert generation.outcome.finish_reason is FinishReason.LENGTH
    assert generation.outcome.usage.completion_tokens == 40


def test_batched_greedy_replies_equal_one_at_a_time(
    start_reply: StartReply, llama_engine: LlamaCppEngine
) -> None:
    params = GenerationParams(max_new_tokens=10)
    alone = [start_reply(llama_engine, [Message.user(p)], params).text() for p in PROMPTS]
    generations = [start_reply(llama_engine, [Message.user(p)], params) for p in PROMPTS]
    together = [""] * len(PROMPTS)

    def read(i: int) -> None:
        together[i] = generations[i].text()

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert together == alone


def test_cancel_stops_one_request_and_not_its_neighbour(
    start_reply: StartReply, llama_engine: LlamaCppEngine
) -> None:
    doomed = start_reply(
        llama_engine,
        [Message.user("Write a long story about a dragon.")],
        GenerationParams(max_new_tokens=300),
    )
    neighbour = start_reply(
        llama_engine,
        [Message.user("Write a poem about the sea.")],
        GenerationParams(max_new_tokens=12),
    )
    chunks = iter(doomed)
    assert next(chunks)
    doomed.cancel()
    assert list(chunks) == []
    assert doomed.late_chunks <= 2
    assert doomed.produced_chunks < 300
    neighbour.text()
    assert neighbour.outcome is not None
    assert neighbour.outcome.finish_reason is FinishReason.LENGTH
    assert neighbour.outcome.usage.completion_tokens == 12


def test_stop_sequences_cut_the_reply(
    start_reply: StartReply, llama_engine: LlamaCppEngine
) -> None:
    params = GenerationParams(max_new_tokens=10)
    free = start_reply(llama_engine, [Message.user("Name three fruits.")], params).text()
    assert "2." in free
    stopped = start_reply(
        llama_engine,
        [Message.user("Name three fruits.")],
        params.model_copy(update={"stop": ("2.",)}),
    )
    text = stopped.text()
    assert "2." not in text
    assert free.startswith(text)
    assert stopped.outcome is not None
    assert stopped.outcome.finish_reason is FinishReason.STOP


def test_old_turns_are_dropped_and_an_oversized_message_is_refused(start_reply: StartReply) -> None:
    engine = LlamaCppEngine(EngineSettings(engine="llamacpp", context_window=64, max_batch_size=1))
    try:
        history = [
            Message.user("Tell me about the sea. " * 3),
            Message.assistant("The sea is large and blue. " * 3),
            Message.user("Hi"),
        ]
        generation = start_reply(engine, history, GenerationParams(max_new_tokens=8))
        generation.text()
        assert generation.outcome is not None
        assert generation.outcome.dropped_messages == 2
        with pytest.raises(ContextOverflowError):
            start_reply(engine, [Message.user("word " * 200)], GenerationParams(max_new_tokens=8))
    finally:
        engine.close()
