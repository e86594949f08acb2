"""The words of the waiting states (what the reply bubble says before its first token)."""

from __future__ import annotations

from typing import Any

from chatbot.domain import ReplyEvent, ReplyEventType, WaitPhase
from chatbot.ui.waiting import ordinal, wait_text


def _wait(**fields: Any) -> ReplyEvent:
    return ReplyEvent(type=ReplyEventType.WAITING, conversation_id="c", **fields)


def test_ordinals() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "101st",
        "111th",
    ]


def test_each_phase_says_why_and_for_how_long() -> None:
    assert wait_text(_wait(phase=WaitPhase.LOADING)) == "Loading the model…"
    queued = _wait(phase=WaitPhase.QUEUED, queue_position=2, eta_s=7.6)
    assert wait_text(queued) == "Waiting: 2nd in the queue, about 8 s"
    assert wait_text(_wait(phase=WaitPhase.QUEUED, queue_position=1, eta_s=0.2)) == (
        "Waiting: 1st in the queue, about 1 s"
    )
    unmeasured = _wait(phase=WaitPhase.QUEUED, queue_position=3)
    assert wait_text(unmeasured) == "Waiting: 3rd in the queue"
    reading = _wait(phase=WaitPhase.READING, prompt_tokens=1200)
    assert wait_text(reading) == "Reading your message (1,200 tokens)…"
