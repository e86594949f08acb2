"""Fitting a conversation into the context window by dropping the oldest turns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chatbot.domain import Message, Role
from chatbot.errors import ContextOverflowError


@dataclass(frozen=True)
class FittedPrompt:
    messages: list[Message]
    prompt_tokens: int
    dropped_messages: int
    max_new_tokens: int


def fit_to_context(
    messages: Sequence[Message],
    count_tokens: Callable[[Sequence[Message]], int],
    context_window: int,
    max_new_tokens: int,
) -> FittedPrompt:
    """Keep the system prompt and the newest turns that fit with room for the reply.

    Oldest turns go first, a user message together with the reply that followed it, so the
    history still starts with a user turn. When even the last message alone leaves no room for
    one new token, that is the caller's error and it says by how much.
    """
    system = [m for m in messages if m.role is Role.SYSTEM][:1]
    turns = [m for m in messages if m.role is not Role.SYSTEM]
    dropped = 0
    while True:
        candidate = system + turns
        tokens = count_tokens(candidate)
        room = context_window - tokens
        if room >= max_new_tokens or (len(turns) <= 1 and room >= 1):
            return FittedPrompt(candidate, tokens, dropped, min(max_new_tokens, room))
        if len(turns) <= 1:
            raise ContextOverflowError(
                f"the prompt needs {tokens} tokens but the model's context window is "
                f"{context_window}; shorten the message (or the system prompt)",
                prompt_tokens=tokens,
                context_window=context_window,
                completion_tokens=max_new_tokens,
            )
        cut = 1
        while cut < len(turns) - 1 and turns[cut].role is not Role.USER:
            cut += 1
        dropped += cut
        turns = turns[cut:]
