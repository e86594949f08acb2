"""In-process apps over the session's embedded engine: the fast tier of the API tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chatbot.api import create_app
from chatbot.config import EngineSettings, LimitSettings, ServerSettings, StoreSettings
from chatbot.engine.transformers_engine import TransformersEngine
from tests.fixtures.servers import BackendProcess

# Short replies keep the fast tier fast on a shared 2-core machine.
TEST_LIMITS = {"max_tokens_cap": 16, "default_max_tokens": 4}

AppFactory = Callable[..., FastAPI]
ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_app(embedded_engine: TransformersEngine, tmp_path: Path) -> AppFactory:
    """An app over the shared engine and a SQLite file of its own; settings overridable."""

    def make(limits: dict[str, Any] | None = None, **server: Any) -> FastAPI:
        server.setdefault("warmup", False)
        return create_app(
            ServerSettings(**server),
            EngineSettings(model="embedded"),
            StoreSettings(data_dir=tmp_path / "data"),
            LimitSettings(**{**TEST_LIMITS, **(limits or {})}),
            engine=embedded_engine,
        )

    return make


@pytest.fixture
def make_client(make_app: AppFactory) -> Iterator[ClientFactory]:
    """A started TestClient (lifespan run); server errors come back as responses."""
    with contextlib.ExitStack() as stack:

        def make(limits: dict[str, Any] | None = None, **server: Any) -> TestClient:
            client = TestClient(make_app(limits, **server), raise_server_exceptions=False)
            return stack.enter_context(client)

        yield make


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture(scope="session")
def tools_backend() -> Iterator[BackendProcess]:
    """A real backend whose caps fit tool calls and what Open WebUI asks (up to 1000 tokens)."""
    env = {"CHATBOT_MAX_TOKENS_CAP": "1000", "CHATBOT_DEFAULT_MAX_TOKENS": "64"}
    with BackendProcess(env) as backend:
        yield backend
