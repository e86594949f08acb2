"""The engine protocol: messages plus parameters in, a cancellable stream of text chunks out."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from chatbot.domain import FinishReason, GenerationParams, Message, Usage
from chatbot.errors import ChatbotError, GenerationError


@dataclass(frozen=True)
class GenerationOutcome:
    """How a generation ended; available once its stream is exhausted."""

    finish_reason: FinishReason
    usage: Usage
    dropped_messages: int = 0


class Generation:
    """A reply in progress, produced by an engine thread and consumed by one reader.

    Iterate it (in a thread) or ``async for`` over :meth:`stream` (in an event loop) for text
    chunks; :attr:`outcome` is set when the stream ends. :meth:`cancel` asks the engine to stop
    before its next token.
    """

    def __init__(self, *, prompt_tokens: int = 0, dropped_messages: int = 0) -> None:
        self.prompt_tokens = prompt_tokens
        self.dropped_messages = dropped_messages
        self.outcome: GenerationOutcome | None = None
        self._items: queue.SimpleQueue[str | GenerationOutcome | BaseException] = (
            queue.SimpleQueue()
        )
        self._cancel = threading.Event()
        self._wakeup: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._lock = threading.Lock()

    # -- consumer side -------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __iter__(self) -> Iterator[str]:
        while self.outcome is None:
            item = self._items.get()
            text = self._accept(item)
            if text is not None:
                yield text

    async def stream(self) -> AsyncIterator[str]:
        """Async view of the same chunks, without a thread per reader."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        with self._lock:
            self._wakeup = (loop, ready)
        try:
            while self.outcome is None:
                try:
                    item = self._items.get_nowait()
                except queue.Empty:
                    ready.clear()
                    if self._items.empty():
                        await ready.wait()
                    continue
                text = self._accept(item)
                if text is not None:
                    yield text
        finally:
            with self._lock:
                self._wakeup = None

    def text(self) -> str:
        """Block until the end and return the whole reply."""
        return "".join(self)

    def _accept(self, item: str | GenerationOutcome | BaseException) -> str | None:
        if isinstance(item, GenerationOutcome):
            self.outcome = item
            return None
        if isinstance(item, BaseException):
            self.outcome = GenerationOutcome(
                FinishReason.ERROR, Usage(prompt_tokens=self.prompt_tokens)
            )
            if isinstance(item, ChatbotError):
                raise item
            raise GenerationError("the model failed while generating") from item
        return item

    # -- producer side (engine thread) ---------------------------------------------------
    def push(self, item: str | GenerationOutcome | BaseException) -> None:
        self._items.put(item)
        with self._lock:
            wakeup = self._wakeup
        if wakeup is not None:
            loop, ready = wakeup
            # RuntimeError: the reader's loop has closed, so nobody is listening any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ready.set)


@runtime_checkable
class Engine(Protocol):
    """What every model runtime implements."""

    @property
    def model_id(self) -> str: ...

    @property
    def context_window(self) -> int: ...

    def load(self) -> None:
        """Load weights; idempotent. Called at start or on first use, never at import."""

    def start(self, messages: Sequence[Message], params: GenerationParams) -> Generation:
        """Validate and fit the prompt (raising before any text), then begin generating."""

    def close(self) -> None:
        """Stop background work and free the model."""
