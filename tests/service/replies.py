"""Reading a reply's events in the service tests."""

from __future__ import annotations

from collections.abc import Iterator

from chatbot.domain import ReplyEvent, ReplyEventType


def text_of(events: list[ReplyEvent]) -> str:
    return "".join(e.delta for e in events if e.type is ReplyEventType.DELTA)


def until_first_delta(events: Iterator[ReplyEvent]) -> list[ReplyEvent]:
    """The events up to the first text; fails if the reply ends before any."""
    seen = []
    for event in events:
        seen.append(event)
        if event.type is ReplyEventType.DELTA:
            return seen
    raise AssertionError(f"the reply ended before any text: {seen}")
