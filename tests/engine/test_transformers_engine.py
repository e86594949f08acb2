"""The transformers engine on the real embedded model (greedy, so answers are deterministic)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from chatbot.config import EngineSettings
from chatbot.domain import FinishReason, GenerationParams, Message
from chatbot.engine.transformers_engine import TransformersEngine
from chatbot.errors import ContextOverflowError
from tests.fixtures.engines import StartReply

pytestmark = pytest.mark.slow

HELLO = [Message.user("Hello! Who are you?")]


def test_construction_does_not_load_the_model() -> None:
    engine = TransformersEngine(EngineSettings())
    assert engine._loaded is None
    assert engine.model_id == "SmolLM2-135M-Instruct"


def test_greedy_reply_matches_transformers_generate(
    start_reply: StartReply, embedded_engine: TransformersEngine
) -> None:
    state = embedded_engine._state()
    generation = start_reply(embedded_engine, HELLO, GenerationParams(max_new_tokens=24))
    ours = generation.text()
    ids = torch.tensor([state.prompt.encode(HELLO)])
    with torch.inference_mode():
        reference = state.model.generate(ids, max_new_tokens=24, do_sample=False)
    expected = state.tokenizer.decode(reference[0, ids.shape[1] :], skip_special_tokens=True)
    assert ours == expected
    assert ours.strip()
    assert generation.outcome is not None
    assert generation.outcome.usage.prompt_tokens == ids.shape[1]


def test_streamed_chunks_join_to_the_whole_reply(
    start_reply: StartReply, embedded_engine: TransformersEngine
) -> None:
    params = GenerationParams(max_new_tokens=20)
    chunks = list(start_reply(embedded_engine, HELLO, params))
    assert len(chunks) > 3
    assert "".join(chunks) == start_reply(embedded_engine, HELLO, params).text()


def test_length_limit_and_usage(
    start_reply: StartReply, embedded_engine: TransformersEngine
) -> None:
    generation = start_reply(
        embedded_engine,
        [Message.user("Write a long story about a dragon.")],
        GenerationParams(max_new_tokens=7),
    )
    generation.text()
    assert generation.outcome is not None
    assert generation.outcome.finish_reason is FinishReason.LENGTH
    assert generation.outcome.usage.completion_tokens == 7


def test_end_of_sequence_is_a_stop(
    start_reply: StartReply, embedded_engine: TransformersEngine
) -> None:
    generation = start_reply(embedded_engine, HELLO, GenerationParams(max_new_tokens=200))
    generation.text()
    assert generation.outcome is not None
    assert generation.outcome.finish_reason is FinishReason.STOP
    assert generation.outcome.usage.completion_tokens < 200


def test_ignore_eos_generates_to_the_limit(
    start_reply: StartReply, embedded_engine: TransformersEngine
) -> None:
    ended = start_reply(embedded_engine, HELLO, GenerationParams(max_new_tokens=60))
    ended.text()
    assert ended.outcome is not None and ended.outcome.finish_reason is FinishReason.STOP
    short = ended.outcome.usage.completion_tokens
    past = start_reply(
        embedded_engine, HELLO, GenerationParams(max_new_tokens=short + 20, ignore_eos=True)
    )
    text = past.text()
    assert past.outcome is not None and past.outcome.finish_reason is FinishReason.LENGTH
    assert past.outcome.usage.completion_tokens == short + 20
    assert text.startswith(ended.text().rstrip()[:10])  # the same greedy start, then more


def test_stop_sequence_cuts_the_reply(
    start_reply: StartReply, embedded_engine: TransformersEngine
) -> None:
    full = start_reply(embedded_engine, HELLO, GenerationParams(max_new_tokens=24)).text()
    words = full.split()
    assert len(words) >= 4
    stop = words[3]
    generation = start_reply(
        embedded_engine, HELLO, GenerationParams(max_new_tokens=24, stop=(stop,))
    )
    text = generation.text()
    assert text == full[: full.index(stop)]
    assert generation.outcome is not None
    assert generation.outcome.finish_reason is FinishReason.STOP


def test_seeded_sampling_repeats(
    start_reply: StartReply, embedded_engine: TransformersEngine
) -> None:
    params = GenerationParams(max_new_tokens=16, temperature=1.0, top_p=0.9, seed=1234)
    first = start_reply(embedded_engine, HELLO, params).text()
    assert first == start_reply(embedded_engine, HELLO, params).text()


def test_cancel_stops_within_one_token(
    start_reply: StartReply, embedded_engine: TransformersEngine
) -> None:
    generation = start_reply(
        embedded_engine,
        [Message.user("Tell me a very long story about the sea.")],
        GenerationParams(max_new_tokens=300),
    )
    stream = iter(generation)
    for _ in range(3):
        next(stream)
    generation.cancel()
    assert list(stream) == []
    # What the model thread made after the cancel, read or not: at most a step or two.
    assert generation.late_chunks <= 2
    assert generation.produced_chunks < 300


def test_concurrent_callers_each_get_their_own_reply(
    start_reply: StartReply, embedded_engine: TransformersEngine
) -> None:
    prompts = [[Message.user(q)] for q in ("What is 2+2?", "Name a colour.", "Say hi.")]
    params = GenerationParams(max_new_tokens=10)
    expected = [start_reply(embedded_engine, p, params).text() for p in prompts]
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        results[i] = start_reply(embedded_engine, prompts[i % 3], params).text()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [results[i] for i in range(6)] == expected * 2


def test_history_is_trimmed_to_the_context_window(start_reply: StartReply) -> None:
    engine = TransformersEngine(EngineSettings(context_window=120))
    try:
        history = [Message.system("You are terse.")]
        for i in range(12):
            history += [Message.user(f"Question number {i} about cats?"), Message.assistant("Yes.")]
        history.append(Message.user("And dogs?"))
        generation = start_reply(engine, history, GenerationParams(max_new_tokens=16))
        generation.text()
        assert generation.dropped_messages > 0
        assert generation.dropped_messages % 2 == 0
        assert generation.prompt_tokens + 16 <= 120
        assert engine._state().prompt.encode([history[0]])  # system prompt still renders

        with pytest.raises(ContextOverflowError, match="context window is 120"):
            start_reply(engine, [Message.user("cat " * 400)], GenerationParams(max_new_tokens=4))
    finally:
        engine.close()


def test_a_missing_gguf_file_is_a_clear_error(tmp_path: Path) -> None:
    from chatbot.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="no such GGUF"):
        TransformersEngine(EngineSettings(model=str(tmp_path / "nope.gguf")))
