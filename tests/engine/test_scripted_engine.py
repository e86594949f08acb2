"""The scripted engine: the engine contract with replies by rule, at a set pace."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatbot.config import EngineSettings
from chatbot.domain import FinishReason, GenerationParams, Message
from chatbot.engine import create_engine
from chatbot.engine.scripted_engine import ScriptedEngine
from chatbot.errors import ConfigurationError, ContextOverflowError, InvalidRequestError
from tests.fixtures.engines import StartReply, SyncReply, run_async


def _engine(**settings: object) -> ScriptedEngine:
    engine = create_engine(EngineSettings(engine="scripted", **settings))  # type: ignore[arg-type]
    assert isinstance(engine, ScriptedEngine)
    engine.load()
    return engine


def test_a_reply_quotes_the_message_then_counts_and_ends_at_its_length(
    start_reply: StartReply,
) -> None:
    engine = _engine(scripted_reply_tokens=12, scripted_token_s=0)
    reply = start_reply(engine, [Message.user("Hello there")], GenerationParams(max_new_tokens=50))
    text = reply.text()
    assert text == "Scripted reply to Hello there: 1 2 3 4 5 6"
    assert reply.outcome is not None
    assert reply.outcome.finish_reason is FinishReason.STOP
    assert reply.outcome.usage.completion_tokens == 12 == reply.read_chunks
    assert reply.prompt_tokens == 2 + 4
    assert engine.model_id == "scripted"


def test_max_tokens_cuts_it_and_ignore_eos_runs_to_max_tokens(start_reply: StartReply) -> None:
    engine = _engine(scripted_reply_tokens=5, scripted_token_s=0)
    cut = start_reply(engine, [Message.user("Hi")], GenerationParams(max_new_tokens=3))
    assert cut.text() == "Scripted reply to"
    assert cut.outcome is not None and cut.outcome.finish_reason is FinishReason.LENGTH
    longer = GenerationParams(max_new_tokens=40, ignore_eos=True)
    full = start_reply(engine, [Message.user("Hi")], longer)
    assert full.text().endswith(" 35")
    assert full.outcome is not None
    assert full.outcome.finish_reason is FinishReason.LENGTH
    assert full.outcome.usage.completion_tokens == 40


def _first_word_read(
    start_reply: StartReply, engine: ScriptedEngine, max_new_tokens: int
) -> tuple[SyncReply, Iterator[str]]:
    """A reply to "Hi" past the end of text, its first token read: the rest still to come."""
    params = GenerationParams(max_new_tokens=max_new_tokens, ignore_eos=True)
    reply = start_reply(engine, [Message.user("Hi")], params)
    words = iter(reply)
    assert next(words) == "Scripted"
    return reply, words


def test_a_cancel_stops_it_within_one_token(start_reply: StartReply) -> None:
    reply, _ = _first_word_read(start_reply, _engine(scripted_token_s=0.05), 10_000)
    reply.cancel()
    assert reply.produced_chunks == 1
    assert reply.outcome is None


def test_the_window_drops_old_turns_and_refuses_a_message_too_long(
    start_reply: StartReply,
) -> None:
    engine = _engine(context_window=40, scripted_token_s=0)
    history = [
        Message.user("one two three four five six seven eight"),
        Message.assistant("nine ten eleven twelve thirteen fourteen"),
        Message.user("Hi"),
    ]
    reply = start_reply(engine, history, GenerationParams(max_new_tokens=20))
    reply.text()
    assert reply.dropped_messages == 2
    with pytest.raises(ContextOverflowError, match="context window is 40"):
        start_reply(engine, [Message.user("word " * 60)], GenerationParams(max_new_tokens=4))


def test_a_json_schema_is_refused_with_what_would_do_it() -> None:
    engine = _engine()

    async def ask() -> None:
        stream = engine.generate(
            [Message.user("Hi")], GenerationParams(), json_schema={"type": "object"}
        )
        await anext(stream)

    with pytest.raises(InvalidRequestError, match="structured output needs a model"):
        run_async(ask())


def test_its_load_takes_the_time_it_is_told_once_and_a_close_ends_it() -> None:
    engine = ScriptedEngine(EngineSettings(engine="scripted", scripted_load_s=3600))
    failures: list[BaseException] = []

    def load() -> None:
        try:
            engine.load()
        except ConfigurationError as exc:
            failures.append(exc)

    loading = threading.Thread(target=load)
    loading.start()
    engine.close()  # a server stopping while its model loads does not wait an hour
    loading.join(60)
    assert not loading.is_alive()
    assert len(failures) == 1 and "closed while it loaded" in str(failures[0])
    quick = ScriptedEngine(EngineSettings(engine="scripted", scripted_load_s=0.01))
    quick.load()
    quick.load()  # idempotent
    assert quick.context_window == 8192


def test_its_load_waits_for_the_gate_file(tmp_path: Path) -> None:
    gate = tmp_path / "loaded"
    engine = ScriptedEngine(EngineSettings(engine="scripted", scripted_load_gate=gate))
    loading = threading.Thread(target=engine.load)
    loading.start()
    loading.join(0.3)
    assert loading.is_alive()  # no file yet: still loading, however long we looked
    gate.touch()
    loading.join(60)
    assert not loading.is_alive()


def test_a_held_reply_waits_until_released(start_reply: StartReply) -> None:
    engine = _engine(scripted_token_s=0)
    reply, words = _first_word_read(start_reply, engine, 6)
    engine.hold()
    waiting = threading.Thread(target=lambda: next(words))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive()  # held: no second token, however long we looked
    engine.release()
    waiting.join(60)
    assert not waiting.is_alive()
    assert "".join(words) == " to Hi: 1"
    assert reply.outcome is not None and reply.outcome.usage.completion_tokens == 6
