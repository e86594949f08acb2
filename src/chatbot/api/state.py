"""Everything one app instance owns, kept on ``app.state.runtime`` (no module-level state)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chatbot.service.admission import AdmissionControl
from chatbot.service.metrics import Metrics
from chatbot.config import EngineSettings, LimitSettings, ServerSettings, StoreSettings
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.engine import Engine


class Drain:
    """Graceful shutdown: first stop taking work, then (after the grace) end what still runs.

    Thread-safe flags: the signal handler, the server loop and stream loops all read them.
    """

    def __init__(self) -> None:
        self._draining = threading.Event()
        self._aborted = threading.Event()
        self.started_at: float | None = None

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
        self.begin()
        self._aborted.set()


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
    """The app's parts; the lifespan fills ``engine`` and ``service`` and sets ``ready``."""

    server: ServerSettings
    engine_settings: EngineSettings
    store_settings: StoreSettings
    limits: LimitSettings
    admission: AdmissionControl
    metrics: Metrics
    engine: Engine | None = None
    service: ChatServiceProtocol | None = None
    owns_engine: bool = True
    owns_service: bool = True
    ready: threading.Event = field(default_factory=threading.Event)
    drain: Drain = field(default_factory=Drain)
    active: ActiveRequests = field(default_factory=ActiveRequests)
    startup_error: str | None = None
    background: list[Any] = field(default_factory=list)
