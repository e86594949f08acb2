"""Dropping the oldest turns to fit the context window, keeping the system prompt."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from chatbot.domain import Message, Role
from chatbot.engine.context import fit_to_context
from chatbot.errors import ContextOverflowError


def count_words(messages: Sequence[Message]) -> int:
    """Stands in for a tokenizer: one token per word plus two per message."""
    return sum(len(m.content.split()) + 2 for m in messages)


HISTORY = [
    Message.system("be brief"),  # 4
    Message.user("one two three"),  # 5
    Message.assistant("four five"),  # 4
    Message.user("six seven eight"),  # 5
    Message.assistant("nine"),  # 3
    Message.user("ten"),  # 3
]


def test_everything_fits() -> None:
    fitted = fit_to_context(HISTORY, count_words, context_window=100, max_new_tokens=10)
    assert fitted.messages == HISTORY
    assert fitted.dropped_messages == 0
    assert fitted.prompt_tokens == 24
    assert fitted.max_new_tokens == 10


def test_oldest_turns_go_first_in_pairs_and_the_system_prompt_stays() -> None:
    fitted = fit_to_context(HISTORY, count_words, context_window=25, max_new_tokens=10)
    assert fitted.messages[0] == HISTORY[0]
    assert fitted.messages[1].role is Role.USER
    assert fitted.dropped_messages == 2
    assert fitted.prompt_tokens + 10 <= 25


def test_the_last_message_alone_gets_what_room_is_left() -> None:
    fitted = fit_to_context(HISTORY, count_words, context_window=10, max_new_tokens=50)
    assert fitted.messages == [HISTORY[0], HISTORY[-1]]
    assert fitted.dropped_messages == 4
    assert fitted.max_new_tokens == 3


def test_a_message_that_cannot_fit_is_a_clear_error() -> None:
    with pytest.raises(ContextOverflowError) as info:
        fit_to_context([Message.user("word " * 50)], count_words, 20, 5)
    assert info.value.prompt_tokens == 52
    assert info.value.context_window == 20
    assert "52 tokens" in info.value.message and "20" in info.value.message
