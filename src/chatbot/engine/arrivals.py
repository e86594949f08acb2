"""Requests waiting for a model thread: the thread sleeps until one comes, never polls."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ArrivalQueue(Generic[T]):
    """FIFO of submitted requests, taken by the model thread between steps.

    A request cancelled while it waits is handed to ``drop`` at the next take, so a stop costs
    no wait for a place.
    """

    def __init__(self, cancelled: Callable[[T], bool], drop: Callable[[T], None]) -> None:
        self._cancelled = cancelled
        self._drop = drop
        self._waiting: collections.deque[T] = collections.deque()
        self._wakeup = threading.Condition()
        self._closed = False

    def put(self, item: T) -> None:
        with self._wakeup:
            self._waiting.append(item)
            self._wakeup.notify()

    def put_back(self, item: T) -> None:
        """First in line again (it was taken but could not start yet)."""
        with self._wakeup:
            self._waiting.appendleft(item)

    def drain(self) -> list[T]:
        """Everything still waiting (at shutdown)."""
        with self._wakeup:
            items = list(self._waiting)
            self._waiting.clear()
            return items

    def close(self) -> None:
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()

    def take(self, room: int | None, busy: bool) -> list[T] | None:
        """Up to ``room`` requests (None: all); waits for one unless ``busy`` (rows are running).

        None once closed: the model thread ends.
        """
        with self._wakeup:
            while not self._closed and not self._waiting and not busy:
                self._wakeup.wait()
            if self._closed:
                return None
            for item in [i for i in self._waiting if self._cancelled(i)]:
                self._waiting.remove(item)
                self._drop(item)
            taken: list[T] = []
            while self._waiting and (room is None or len(taken) < room):
                taken.append(self._waiting.popleft())
            return taken
