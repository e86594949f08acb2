"""Both transports of ChatServiceProtocol, so one suite proves the same behaviour twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chatbot.config import EngineSettings, LimitSettings, StoreSettings
from chatbot.engine.transformers_engine import TransformersEngine
from chatbot.service.http import HttpChatService
from chatbot.service.local import ChatService
from chatbot.service.portal import PortalChatService
from chatbot.service.protocol import ChatServiceProtocol

# The same caps as the session backend (tests/fixtures/servers.py), so both sides agree.
LIMITS = LimitSettings(max_tokens_cap=64, default_max_tokens=8)


@pytest.fixture(params=["in-process", "http"])
def chat_service(
    request: pytest.FixtureRequest, embedded_engine: TransformersEngine, tmp_path: Path
) -> Iterator[ChatServiceProtocol]:
    if request.param == "in-process":
        service = PortalChatService.around(
            ChatService.open(
                EngineSettings(),
                StoreSettings(database_url=f"sqlite:///{tmp_path / 'contract.sqlite3'}"),
                LIMITS,
                engine=embedded_engine,
            )
        )
        yield service
        service.close()
        return
    client = HttpChatService(request.getfixturevalue("backend_server").url)
    yield client
    client.close()
