"""Everything one app instance owns, kept on ``app.state.runtime`` (no module-level state).

Routes never take the whole :class:`Runtime`: :mod:`chatbot.api.deps` hands each one the part
it uses (the reply runner, the service, the limits, the lifecycle).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chatbot.api.openai.models import model_created
from chatbot.config import EngineSettings, LimitSettings, ServerSettings, StoreSettings
from chatbot.engine import Engine
from chatbot.service.local import ChatService
from chatbot.service.metrics import Metrics
from chatbot.service.runner import ReplyRunner
from chatbot.store.api_keys import ApiKeyStore


class Drain:
    """Graceful shutdown: first stop taking work, then (after the grace) end what still runs.

    Thread-safe flags: the signal handler, the server loop and stream loops all read them.
    """

    def __init__(self) -> None:
        self._draining = threading.Event()
        self._aborted = threading.Event()
        self.started_at: float | None = None
        self.on_abort: list[Callable[[], None]] = []
        self._waiters: set[Callable[[], None]] = set()
        self._lock = threading.Lock()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    @property
    def aborted(self) -> bool:
        """The grace period is over: streams still running must end now with an error."""
        return self._aborted.is_set()

    def begin(self) -> None:
        if not self._draining.is_set():
            self.started_at = time.monotonic()
            self._draining.set()

    def abort(self) -> None:
        """End what still runs: every ``on_abort`` callback (the runner stops its replies)."""
        self.begin()
        if not self._aborted.is_set():
            self._aborted.set()
            for callback in self.on_abort:
                callback()
            with self._lock:
                waiters = list(self._waiters)
            for wake in waiters:
                wake()

    async def wait_aborted(self) -> None:
        """Until :meth:`abort` is called (from any thread); at once if it already was."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(event.set)

        with self._lock:
            self._waiters.add(wake)
        try:
            if not self.aborted:
                await event.wait()
        finally:
            with self._lock:
                self._waiters.discard(wake)


@dataclass
class ActiveRequests:
    """Requests being served right now (probes excluded), so a drain knows when it is done."""

    _count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        with self._lock:
            self._count += 1

    def leave(self) -> None:
        with self._lock:
            self._count -= 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


@dataclass
class Runtime:
    """The app's parts; the lifespan fills ``engine``, ``runner`` and ``service``."""

    server: ServerSettings
    engine_settings: EngineSettings
    store_settings: StoreSettings
    limits: LimitSettings
    metrics: Metrics
    engine: Engine | None = None
    runner: ReplyRunner | None = None
    service: ChatService | None = None
    # Per-user API keys, on the conversations' database; opened after its migrations ran.
    api_keys: ApiKeyStore | None = None
    owns_engine: bool = True
    owns_service: bool = True
    ready: threading.Event = field(default_factory=threading.Event)
    drain: Drain = field(default_factory=Drain)
    active: ActiveRequests = field(default_factory=ActiveRequests)
    startup_error: str | None = None
    # When this app was built: ``created`` of /v1/models when the model has no local file.
    started_at: int = field(default_factory=lambda: int(time.time()))

    @functools.cached_property
    def model_created(self) -> int:
        """``created`` of /v1/models: the model file's mtime, the same across calls and restarts."""
        return model_created(self.engine_settings, self.started_at)
