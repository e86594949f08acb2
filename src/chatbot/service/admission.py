"""Admission control: at most C requests generate, at most Q wait, the rest are refused at once.

Refusing at once (429 with Retry-After) instead of queueing without bound keeps latency honest
under overload and lets a load balancer send the request elsewhere. The queue is FIFO so a
request that waited longest gets the next free place. One instance is shared by the API and the
service; it is thread-safe and usable from threads (:meth:`Ticket.wait`) and from an event loop
(:meth:`Ticket.wait_async`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType

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
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiting: deque[Ticket] = deque()

    @property
    def in_flight(self) -> int:
        """Tickets that hold a generation place."""
        with self._lock:
            return self._in_flight

    @property
    def queued(self) -> int:
        """Tickets that wait for a place."""
        with self._lock:
            return len(self._waiting)

    def reserve(self) -> Ticket:
        """A ticket holding a place, or a queue slot; OverloadedError when both are full."""
        with self._lock:
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
                    retry_after_s=self._retry_after_locked(),
                )
            self._waiting.append(ticket)
            return ticket

    def _retry_after_locked(self) -> int:
        """A rough guess: one second per round of the queue ahead, within [1, 60]."""
        rounds = (len(self._waiting) + 1) / self.max_concurrent
        return max(1, min(60, math.ceil(rounds)))

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket._holds_place:
                ticket._holds_place = False
                self._in_flight -= 1
                self._promote_locked()
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(ticket)

    def _promote_locked(self) -> None:
        while self._waiting and self._in_flight < self.max_concurrent:
            nxt = self._waiting.popleft()
            self._in_flight += 1
            nxt._grant()


class Ticket:
    """A queue slot that becomes a generation place; release it exactly once (idempotent)."""

    def __init__(self, control: AdmissionControl) -> None:
        self._control = control
        self._granted = threading.Event()
        self._holds_place = False
        self._released = False
        self._listeners: list[Callable[[], None]] = []
        self._listen_lock = threading.Lock()

    @property
    def granted(self) -> bool:
        """Whether this ticket holds a generation place now (or held one before release)."""
        return self._granted.is_set()

    def _grant(self) -> None:
        # Called with the control's lock held.
        self._holds_place = True
        self._granted.set()
        with self._listen_lock:
            listeners, self._listeners = self._listeners, []
        for notify in listeners:
            notify()

    def _timeout(self, timeout: float | None) -> float:
        return self._control.queue_timeout_s if timeout is None else timeout

    def wait(self, timeout: float | None = None) -> None:
        """Block until this ticket holds a place; UnavailableError (and release) on timeout."""
        if self._released:
            raise UnavailableError("the request was released before it got a place")
        limit = self._timeout(timeout)
        if not self._granted.wait(limit):
            self.release()
            raise UnavailableError(
                f"the request waited {limit:g} s in the queue without a free place; retry later",
                code="queue_timeout",
            )

    async def wait_async(self, timeout: float | None = None) -> None:
        """Like :meth:`wait`, without blocking the event loop."""
        if self._released:
            raise UnavailableError("the request was released before it got a place")
        if self._granted.is_set():
            return
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()

        def notify() -> None:
            # A closed loop raises RuntimeError: nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ready.set)

        with self._listen_lock:
            self._listeners.append(notify)
        if self._granted.is_set():
            return
        limit = self._timeout(timeout)
        try:
            await asyncio.wait_for(ready.wait(), limit)
        except TimeoutError:
            self.release()
            raise UnavailableError(
                f"the request waited {limit:g} s in the queue without a free place; retry later",
                code="queue_timeout",
            ) from None
        except BaseException:
            # Cancelled (client gone): give the slot or the place back.
            self.release()
            raise
        finally:
            with self._listen_lock:
                if notify in self._listeners:
                    self._listeners.remove(notify)

    def release(self) -> None:
        """Free the place or the queue slot; later calls do nothing."""
        with self._listen_lock:
            if self._released:
                return
            self._released = True
        self._control._release(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
