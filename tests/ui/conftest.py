"""AppTest runs of the real app over both transports: in process, and HTTP to a real backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from chatbot.config import EngineSettings, LimitSettings, StoreSettings
from chatbot.domain import Conversation, GenerationParams
from chatbot.engine.transformers_engine import TransformersEngine
from chatbot.service.http import HttpChatService
from chatbot.service.local import ChatService
from chatbot.service.portal import PortalChatService
from chatbot.service.protocol import ChatServiceProtocol

# Replies stay short: a few greedy tokens (the suite's default temperature, tests/conftest.py)
# are enough to see streaming, stats and storage.
SHORT = GenerationParams(max_new_tokens=6)
# The session backend's cap (tests/fixtures/servers.py), so both transports agree.
TEST_LIMITS = LimitSettings(max_tokens_cap=256, default_max_tokens=6)
RUN_TIMEOUT_S = 180


def app_script(service: object) -> None:
    """The page as ``streamlit run`` draws it, with the service handed in.

    AppTest runs this function's source on its own, so it imports what it needs itself.
    """
    from chatbot.ui.app import render_app

    render_app(service)  # type: ignore[arg-type]


def new_app(service: ChatServiceProtocol, conversation: Conversation | None = None) -> AppTest:
    at = AppTest.from_function(app_script, args=(service,), default_timeout=RUN_TIMEOUT_S)
    if conversation is not None:
        assert conversation.id is not None
        at.query_params["c"] = conversation.id
    return at


@pytest.fixture
def monolith_service(
    embedded_engine: TransformersEngine, tmp_path: Path
) -> Iterator[PortalChatService]:
    service = PortalChatService.around(
        ChatService.open(
            EngineSettings(),
            StoreSettings(database_url=f"sqlite:///{tmp_path / 'ui.sqlite3'}"),
            TEST_LIMITS,
            engine=embedded_engine,
        )
    )
    yield service
    service.close()


@pytest.fixture(params=["monolith", "microservices"])
def ui_service(request: pytest.FixtureRequest) -> Iterator[ChatServiceProtocol]:
    """The same UI over each transport; the HTTP one talks to a real backend process."""
    if request.param == "monolith":
        yield request.getfixturevalue("monolith_service")
        return
    backend = request.getfixturevalue("backend_server")
    client = HttpChatService(backend.url)
    yield client
    client.close()


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every file the app hands to Streamlit for a download button, as Streamlit received it."""
    seen: list[dict[str, Any]] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def recording(
        self: MemoryMediaFileStorage,
        data: Any,
        mimetype: str,
        kind: Any,
        filename: str | None = None,
    ) -> str:
        seen.append({"data": data, "mimetype": mimetype, "filename": filename})
        return original(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return seen
