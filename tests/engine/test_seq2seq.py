"""Seq2seq chat models (the seed's BlenderBot family) through the history adapter."""

from __future__ import annotations

import pytest

from chatbot.domain import FinishReason, GenerationParams, Message
from chatbot.engine.prompting import Seq2SeqHistoryPrompt
from chatbot.engine.transformers_engine import TransformersEngine
from chatbot.errors import ContextOverflowError
from tests.fixtures.engines import StartReply


def test_history_is_rendered_as_blenderbot_was_trained(
    blenderbot_engine: TransformersEngine,
) -> None:
    state = blenderbot_engine._state()
    assert isinstance(state.prompt, Seq2SeqHistoryPrompt)
    ids = state.prompt.encode(
        [
            Message.system("ignored"),
            Message.user("Hello"),
            Message.assistant("Hi"),
            Message.user("How are you?"),
        ]
    )
    assert ids[-1] == state.tokenizer.eos_token_id
    assert state.tokenizer.decode(ids[:-1]) == " Hello  Hi   How are you?"


def test_streams_a_reply_with_usage(
    start_reply: StartReply, blenderbot_engine: TransformersEngine
) -> None:
    generation = start_reply(
        blenderbot_engine,
        [Message.user("Hello, how are you today?")],
        GenerationParams(max_new_tokens=8),
    )
    chunks = list(generation)
    assert generation.outcome is not None
    assert generation.outcome.usage.prompt_tokens > 0
    assert generation.outcome.usage.completion_tokens <= 8
    if generation.outcome.finish_reason is FinishReason.LENGTH:
        assert "".join(chunks)


def test_long_history_respects_the_encoder_limit(
    start_reply: StartReply, blenderbot_engine: TransformersEngine
) -> None:
    history: list[Message] = []
    for _ in range(20):
        history += [Message.user("I like to read books in the park."), Message.assistant("Nice.")]
    history.append(Message.user("What do you like?"))
    generation = start_reply(blenderbot_engine, history, GenerationParams(max_new_tokens=4))
    generation.text()
    assert generation.dropped_messages > 0
    assert generation.prompt_tokens <= blenderbot_engine.context_window == 64


def test_one_message_longer_than_the_encoder_is_an_error(
    start_reply: StartReply,
    blenderbot_engine: TransformersEngine,
) -> None:
    with pytest.raises(ContextOverflowError):
        start_reply(blenderbot_engine, [Message.user("books " * 200)], GenerationParams())


def test_reply_length_is_capped_by_the_decoder_positions(
    start_reply: StartReply,
    blenderbot_engine: TransformersEngine,
) -> None:
    generation = start_reply(
        blenderbot_engine, [Message.user("Hello")], GenerationParams(max_new_tokens=500)
    )
    generation.text()
    assert generation.outcome is not None
    assert generation.outcome.usage.completion_tokens <= 63
