"""Why a reply has no text yet, and for about how long: what the service tells a waiting user.

The estimate comes from what the server measured, not from settings: each reply's time in a
generation place (from getting the place to its end) and its tokens go into a window of the last
:data:`WINDOW` replies; their mean is the expected time a place is held, and their tokens per
second of that time bound how long a running reply can still take (its tokens left to the limit
over that speed). The speed counts the whole time in the place, first token's wait included, not
just the time between the first and the last piece: pieces reach the service in bursts when its
event loop is busy, and a short reply's pieces can then all arrive within a millisecond. That is
the likely cause of a CI run that estimated 0.0 s for a reply with 500 tokens left, from one
measured reply of 8 tokens. A bound that is somewhat long beats one that says "now".

To estimate when a queued reply at position ``p`` starts, :func:`estimate_start_s` plays the
queue forward: each of the ``C`` places frees when its running reply is expected to end (the
mean minus the time it has run, but never later than its token budget allows; once past the
mean, its token budget, or another mean while no speed has been measured; at once for an idle
place); the ``p - 1`` replies ahead each take the
place that frees first and hold it for the mean; the reply starts when the next place frees.
No estimate (``None``) until one reply has been measured: a guess would be worse than none.
Estimates round up to a tenth of a second: a running reply just short of the mean is expected to
end in a few milliseconds, and "0.0 s" would say that a queued reply starts now (a CI run under
load saw that beside a reply with 2,990 tokens to go).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
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


@dataclass(frozen=True)
class Running:
    """A reply holding a place: how long it has run, and at most how long it can still take."""

    elapsed_s: float
    budget_left_s: float | None = None  # tokens left to its limit / measured speed


class ReplyTimes:
    """What recent replies measured (the last :data:`WINDOW`): time in a place, speed."""

    def __init__(self, window: int = WINDOW) -> None:
        self._seconds: deque[float] = deque(maxlen=window)
        self._made: deque[tuple[int, float]] = deque(maxlen=window)

    def add(self, seconds: float, tokens: int = 0) -> None:
        """One reply: the seconds it held its place and the tokens it made in them."""
        seconds = max(0.0, seconds)
        self._seconds.append(seconds)
        if tokens > 0 and seconds > 0:
            self._made.append((tokens, seconds))

    def mean_s(self) -> float | None:
        if not self._seconds:
            return None
        return sum(self._seconds) / len(self._seconds)

    def tokens_per_s(self) -> float | None:
        seconds = sum(s for _, s in self._made)
        if seconds <= 0:
            return None
        return sum(t for t, _ in self._made) / seconds


def estimate_start_s(
    position: int, places: int, running: Iterable[Running], mean_s: float | None
) -> float | None:
    """Seconds until the reply at queue ``position`` (1 = next) gets a place; see the module."""
    if mean_s is None:
        return None
    if position < 1:
        return 0.0
    free_at = sorted(_left_s(reply, mean_s) for reply in running)[:places]
    free_at += [0.0] * (places - len(free_at))
    heapq.heapify(free_at)
    for _ in range(position - 1):
        heapq.heappush(free_at, heapq.heappop(free_at) + mean_s)
    return _tenths_up(free_at[0])


def _tenths_up(seconds: float) -> float:
    """Rounded up to a tenth: a place that frees in 0.04 s is not free now ("about 0 s")."""
    return math.ceil(seconds * 10 - 1e-9) / 10


def _left_s(reply: Running, mean_s: float) -> float:
    budget = reply.budget_left_s
    if reply.elapsed_s < mean_s:
        left = mean_s - reply.elapsed_s
        return left if budget is None else min(left, budget)
    if budget is None:  # overdue and no measured speed: another mean, not "now"
        return mean_s
    return max(0.0, budget)


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
