"""Live backends for the authentication tests: the real app under a real uvicorn on loopback.

Each runs in a thread of this process over the session's embedded engine (no model load per
backend), so the tests speak real HTTP to it and its logs reach ``caplog``. The peer uvicorn
sees is 127.0.0.1, which the header-mode tests put inside or outside the trusted networks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from chatbot.api import create_app
from chatbot.api.auth.resolver import log_ref
from chatbot.config import (
    AuthSettings,
    EngineSettings,
    LimitSettings,
    ServerSettings,
    StoreSettings,
)
from chatbot.domain.users import User
from chatbot.engine.transformers_engine import TransformersEngine
from tests.api.conftest import TEST_LIMITS
from tests.fixtures.servers import free_port

START_TIMEOUT_S = 60.0


@dataclass
class LiveBackend:
    url: str
    data_dir: Path
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


StartBackend = Callable[..., LiveBackend]


def acted_for(user_id: str, how: str) -> str:
    """The DEBUG line of a request resolved to ``user_id``: logs name users by a digest only."""
    return f"request acts for user {log_ref(User(id=user_id, name=user_id))} ({how})"


@pytest.fixture
def live_backend(embedded_engine: TransformersEngine, tmp_path: Path) -> Iterator[StartBackend]:
    """``live_backend(AuthSettings(...), api_key=...)``: a started backend; all share a database."""
    started: list[LiveBackend] = []

    def start(auth: AuthSettings, **server: Any) -> LiveBackend:
        server.setdefault("warmup", False)
        data_dir = tmp_path / "data"
        app = create_app(
            ServerSettings(**server),
            EngineSettings(model="embedded"),
            StoreSettings(data_dir=data_dir),
            LimitSettings(**TEST_LIMITS),
            engine=embedded_engine,
            auth=auth,
        )
        port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, proxy_headers=False
        )
        uv = uvicorn.Server(config)
        thread = threading.Thread(target=uv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not uv.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the backend did not start")
            time.sleep(0.05)
        backend = LiveBackend(f"http://127.0.0.1:{port}", data_dir, uv, thread)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()
