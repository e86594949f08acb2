"""Continuous batching on the real embedded model: same greedy text, per-request control."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import torch

from chatbot.config import EngineSettings
from chatbot.domain import FinishReason, GenerationParams, Message
from chatbot.engine.batching import _pad_left
from chatbot.engine.transformers_engine import TransformersEngine
from tests.fixtures.engines import StartReply, SyncReply

PROMPTS = [
    "Hi",
    "What is the capital of France?",
    "Write a poem about the sea.",
    "Name three fruits.",
]


@pytest.fixture(scope="module")
def batching_engine() -> Iterator[TransformersEngine]:
    """A batch of at most two, so three requests also exercise the waiting queue."""
    engine = TransformersEngine(EngineSettings(model="embedded", batching=True, max_batch_size=2))
    engine.load()
    yield engine
    engine.close()


def _read_all(generations: list[SyncReply]) -> list[str]:
    texts = [""] * len(generations)

    def read(i: int) -> None:
        texts[i] = generations[i].text()

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(generations))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return texts


def test_the_setting_picks_the_scheduler(
    batching_engine: TransformersEngine, embedded_engine: TransformersEngine
) -> None:
    assert type(batching_engine._state().scheduler).__name__ == "BatchingScheduler"
    assert type(embedded_engine._state().scheduler).__name__ == "SequentialScheduler"


def test_pad_left_pads_the_sequence_axis_only() -> None:
    kv = torch.ones(2, 3, 4, 5)
    padded = _pad_left(kv, 6)
    assert padded.shape == (2, 3, 6, 5)
    assert padded[:, :, :2].abs().sum() == 0
    assert torch.equal(padded[:, :, 2:], kv)
    mask = torch.ones(2, 3, dtype=torch.long)
    assert _pad_left(mask, 5).tolist() == [[0, 0, 1, 1, 1]] * 2


@pytest.mark.slow
def test_batched_greedy_replies_equal_unbatched(
    start_reply: StartReply,
    batching_engine: TransformersEngine,
    embedded_engine: TransformersEngine,
) -> None:
    params = GenerationParams(max_new_tokens=12)
    expected = [start_reply(embedded_engine, [Message.user(p)], params).text() for p in PROMPTS]
    generations = [start_reply(batching_engine, [Message.user(p)], params) for p in PROMPTS]
    assert _read_all(generations) == expected
    for generation, prompt in zip(generations, PROMPTS, strict=True):
        assert generation.outcome is not None
        usage = generation.outcome.usage
        assert usage.prompt_tokens == len(
            batching_engine._state().prompt.encode([Message.user(prompt)])
        )
        assert 1 <= usage.completion_tokens <= 12


@pytest.mark.slow
def test_cancelling_one_row_leaves_the_others_running(
    start_reply: StartReply,
    batching_engine: TransformersEngine,
) -> None:
    long = GenerationParams(max_new_tokens=16)
    doomed = start_reply(
        batching_engine,
        [Message.user("Write a long story about a dragon.")],
        GenerationParams(max_new_tokens=200),
    )
    survivor = start_reply(batching_engine, [Message.user("Write a poem about the sea.")], long)
    chunks = iter(doomed)
    assert next(chunks)
    doomed.cancel()
    rest = "".join(chunks)
    assert rest == ""  # a closed stream yields nothing more
    assert doomed.late_chunks <= 2  # the model thread stopped within a step or two
    assert doomed.produced_chunks < 200
    survivor.text()
    assert survivor.outcome is not None
    assert survivor.outcome.finish_reason is FinishReason.LENGTH
    assert survivor.outcome.usage.completion_tokens == 16


@pytest.mark.slow
def test_a_new_request_joins_the_running_batch(
    start_reply: StartReply,
    batching_engine: TransformersEngine,
    embedded_engine: TransformersEngine,
) -> None:
    short = GenerationParams(max_new_tokens=4)
    expected = start_reply(embedded_engine, [Message.user("Name three fruits.")], short).text()
    first = start_reply(
        batching_engine,
        [Message.user("Write a long story about a dragon.")],
        GenerationParams(max_new_tokens=48),
    )
    stamps: list[float] = []

    def read_first() -> None:
        for _ in first:
            stamps.append(time.monotonic())

    reader = threading.Thread(target=read_first)
    reader.start()
    while not stamps:
        time.sleep(0.01)
    joined = start_reply(batching_engine, [Message.user("Name three fruits.")], short)
    assert joined.text() == expected
    joined_done = time.monotonic()
    reader.join(timeout=120)
    assert first.outcome is not None
    assert first.outcome.usage.completion_tokens == 48
    # It finished while the long reply was still streaming: it did not wait for that batch.
    assert joined_done < stamps[-1]


@pytest.mark.slow
def test_stop_sequences_apply_per_row(
    start_reply: StartReply, batching_engine: TransformersEngine
) -> None:
    params = GenerationParams(max_new_tokens=12)
    free = start_reply(batching_engine, [Message.user("What is the capital of France?")], params)
    stopped = start_reply(
        batching_engine,
        [Message.user("What is the capital of France?")],
        params.model_copy(update={"stop": ("France",)}),
    )
    free_text, stopped_text = _read_all([free, stopped])
    assert "France" in free_text
    assert "France" not in stopped_text
    assert free_text.startswith(stopped_text)
    assert stopped.outcome is not None
    assert stopped.outcome.finish_reason is FinishReason.STOP
