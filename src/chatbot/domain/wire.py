"""The seed article's wire format: ``past_user_inputs``, ``generated_responses``, ``user_input``.

This is the only place that knows it; everything else speaks lists of :class:`Message`.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatbot.domain.messages import Message, Role
from chatbot.errors import InvalidRequestError


def from_wire(
    past_user_inputs: Sequence[str], generated_responses: Sequence[str], user_input: str
) -> list[Message]:
    """Interleave the two history lists and append the new input, oldest first."""
    if len(generated_responses) != len(past_user_inputs):
        raise InvalidRequestError(
            "past_user_inputs and generated_responses must have the same length "
            f"(got {len(past_user_inputs)} and {len(generated_responses)})",
            param="generated_responses",
        )
    messages: list[Message] = []
    for said, answered in zip(past_user_inputs, generated_responses, strict=True):
        messages.append(Message.user(said))
        messages.append(Message.assistant(answered))
    messages.append(Message.user(user_input))
    return messages


def to_wire(messages: Sequence[Message]) -> dict[str, list[str] | str]:
    """The inverse of :func:`from_wire`: a trailing user message becomes ``user_input``."""
    turns = [m for m in messages if m.role is not Role.SYSTEM]
    user_input = ""
    if turns and turns[-1].role is Role.USER:
        user_input = turns.pop().content
    past = [m.content for m in turns if m.role is Role.USER]
    responses = [m.content for m in turns if m.role is Role.ASSISTANT]
    if len(past) != len(responses):
        raise InvalidRequestError(
            "history must alternate user and assistant messages", param="messages"
        )
    return {"past_user_inputs": past, "generated_responses": responses, "user_input": user_input}
