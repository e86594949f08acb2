"""Admission control: at most C replies generate, at most Q wait, the rest are refused at once.

Refusing at once (429 with Retry-After) instead of queueing without bound keeps latency honest
under overload and lets a load balancer send the request elsewhere. The queue is FIFO so the
reply that waited longest gets the next free place, and a waiting ticket knows its position.

Everything runs on the service's event loop (the backend's, or the monolith's portal loop), so
a place is handed over by resolving the waiter's future: no lock, no thread, no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable

from chatbot.errors import OverloadedError, UnavailableError


class AdmissionControl:
    """Counts generation places and queue slots; hands out :class:`Ticket` objects."""

    def __init__(self, max_concurrent: int, max_queued: int, queue_timeout_s: float) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if max_queued < 0:
            raise ValueError("max_queued must not be negative")
        if queue_timeout_s <= 0:
            raise ValueError("queue_timeout_s must be positive")
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self._in_flight = 0
        self._waiting: deque[Ticket] = deque()

    @property
    def in_flight(self) -> int:
        """Tickets that hold a generation place."""
        return self._in_flight

    @property
    def queued(self) -> int:
        """Tickets that wait for a place."""
        return len(self._waiting)

    def reserve(self) -> Ticket:
        """A ticket holding a place, or a queue slot; OverloadedError when both are full."""
        ticket = Ticket(self)
        if self._in_flight < self.max_concurrent and not self._waiting:
            self._in_flight += 1
            ticket._grant()
            return ticket
        if len(self._waiting) >= self.max_queued:
            raise OverloadedError(
                f"the server is busy: {self._in_flight} requests generating and "
                f"{len(self._waiting)} waiting (limits {self.max_concurrent} and "
                f"{self.max_queued}); retry later",
                retry_after_s=self._retry_after(),
            )
        self._waiting.append(ticket)
        return ticket

    def position(self, ticket: Ticket) -> int:
        """1 for the next in line; 0 when the ticket holds a place or has left."""
        try:
            return self._waiting.index(ticket) + 1
        except ValueError:
            return 0

    def _retry_after(self) -> int:
        """A rough guess: one second per round of the queue ahead, within [1, 60]."""
        rounds = (len(self._waiting) + 1) / self.max_concurrent
        return max(1, min(60, math.ceil(rounds)))

    def _release(self, ticket: Ticket) -> None:
        if ticket._holds_place:
            ticket._holds_place = False
            self._in_flight -= 1
            while self._waiting and self._in_flight < self.max_concurrent:
                self._in_flight += 1
                self._waiting.popleft()._grant()
        else:
            with contextlib.suppress(ValueError):
                self._waiting.remove(ticket)
        for waiting in self._waiting:  # everyone behind moved up (or may have)
            waiting._moved()


class Ticket:
    """A queue slot that becomes a generation place; release it exactly once (idempotent)."""

    def __init__(self, control: AdmissionControl) -> None:
        self._control = control
        self._granted = False
        self._holds_place = False
        self._released = False
        self._waiter: asyncio.Future[None] | None = None
        # Called (on the event loop) when the ticket moves up the queue or gets its place.
        self.on_move: Callable[[], None] | None = None

    @property
    def granted(self) -> bool:
        """Whether this ticket holds a generation place now (or held one before release)."""
        return self._granted

    @property
    def position(self) -> int:
        """Place in the queue: 1 for the next in line, 0 once granted."""
        return self._control.position(self)

    def _grant(self) -> None:
        self._granted = True
        self._holds_place = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._moved()

    def _moved(self) -> None:
        if self.on_move is not None:
            self.on_move()

    async def wait(self, timeout: float | None = None) -> None:
        """Until this ticket holds a place; UnavailableError (slot freed) on timeout.

        Cancelling the waiting task (the request went away) gives the slot back.
        """
        if self._released:
            raise UnavailableError("the request was released before it got a place")
        if self._granted:
            return
        limit = self._control.queue_timeout_s if timeout is None else timeout
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._waiter), limit)
        except TimeoutError:
            self.release()
            raise UnavailableError(
                f"the request waited {limit:g} s in the queue without a free place; retry later",
                code="queue_timeout",
            ) from None
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Free the place or the queue slot; later calls do nothing."""
        if self._released:
            return
        self._released = True
        self._control._release(self)
