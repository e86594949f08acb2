"""The seed's wire format converts to messages and back in one place."""

from __future__ import annotations

import pytest

from chatbot.domain import Message, Role, from_wire, to_wire
from chatbot.errors import InvalidRequestError


def test_from_wire_interleaves_oldest_first() -> None:
    messages = from_wire(["hi", "how are you?"], ["hello", "fine"], "bye")
    assert [(m.role, m.content) for m in messages] == [
        (Role.USER, "hi"),
        (Role.ASSISTANT, "hello"),
        (Role.USER, "how are you?"),
        (Role.ASSISTANT, "fine"),
        (Role.USER, "bye"),
    ]


def test_round_trip() -> None:
    wire = {
        "past_user_inputs": ["a, b", "ü"],
        "generated_responses": ['"c"', "\n"],
        "user_input": "d",
    }
    assert to_wire(from_wire(**wire)) == wire  # type: ignore[arg-type]


def test_to_wire_ignores_the_system_prompt() -> None:
    wire = to_wire([Message.system("s"), Message.user("u")])
    assert wire == {"past_user_inputs": [], "generated_responses": [], "user_input": "u"}


def test_unequal_history_lists_are_a_clear_error() -> None:
    with pytest.raises(InvalidRequestError, match="same length") as info:
        from_wire(["a", "b"], ["x"], "c")
    assert info.value.param == "generated_responses"
