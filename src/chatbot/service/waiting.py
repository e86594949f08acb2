"""Why a reply has no text yet, and for about how long: what the service tells a waiting user.

The estimate comes from what the server measured, not from settings: each reply's time in a
generation place (from getting the place to its end) goes into a window of the last
:data:`WINDOW` replies, and their mean is the expected time a place is held. To estimate when a
queued reply at position ``p`` starts, :func:`estimate_start_s` plays the queue forward: each of
the ``C`` places frees when its running reply is expected to end (the mean minus the time it has
run so far, at least zero; at once for an idle place); the ``p - 1`` replies ahead each take the
place that frees first and hold it for the mean; the reply starts when the next place frees.
No estimate (``None``) until one reply has been measured: a guess would be worse than none.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from chatbot.domain import WaitPhase

WINDOW = 20
# Prompts at least this long get a "reading your message" notice before their first token.
READING_NOTICE_TOKENS = 256
# How often a waiting reply's estimate is sent again while nothing else changes.
WAIT_TICK_S = 1.0


@dataclass(frozen=True)
class WaitState:
    """One ``waiting`` event's content."""

    phase: WaitPhase
    queue_position: int | None = None
    eta_s: float | None = None
    prompt_tokens: int | None = None


@dataclass(frozen=True)
class RunnerStatus:
    """The server's load now, for ``GET /v1/status`` and the UI's start page."""

    loaded: bool
    running: int
    queued: int
    max_concurrent: int
    max_queued: int
    mean_reply_s: float | None
    estimate_s: float | None  # until a new reply would start generating
    load_error: str | None = None


class ReplyTimes:
    """Seconds that recent replies held a generation place (the last :data:`WINDOW`)."""

    def __init__(self, window: int = WINDOW) -> None:
        self._seconds: deque[float] = deque(maxlen=window)

    def add(self, seconds: float) -> None:
        self._seconds.append(max(0.0, seconds))

    def mean_s(self) -> float | None:
        if not self._seconds:
            return None
        return sum(self._seconds) / len(self._seconds)


def estimate_start_s(
    position: int, places: int, running_elapsed_s: Iterable[float], mean_s: float | None
) -> float | None:
    """Seconds until the reply at queue ``position`` (1 = next) gets a place; see the module."""
    if mean_s is None:
        return None
    if position < 1:
        return 0.0
    free_at = sorted(max(0.0, mean_s - elapsed) for elapsed in running_elapsed_s)[:places]
    free_at += [0.0] * (places - len(free_at))
    heapq.heapify(free_at)
    for _ in range(position - 1):
        heapq.heappush(free_at, heapq.heappop(free_at) + mean_s)
    return round(free_at[0], 1)


class Pulse:
    """Wakes every task waiting on it; sync code may fire it (on the same event loop).

    A fresh future per round, so any number of readers wait without missing a firing that
    happens while they wait (one that happens between their waits is caught by the timeout).
    """

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def fire(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        self._future = None

    async def wait(self, timeout_s: float) -> None:
        """Until the next firing, or ``timeout_s``."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._future), timeout_s)
