"""Both transports of ChatServiceProtocol, so one suite proves the same behaviour twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chatbot.config import EngineSettings, LimitSettings, StoreSettings
from chatbot.domain.users import User
from chatbot.engine.transformers_engine import TransformersEngine
from chatbot.service.http import HttpChatService
from chatbot.service.local import ChatService
from chatbot.service.portal import PortalChatService
from chatbot.service.protocol import ChatServiceProtocol
from tests.fixtures.servers import SESSION_SERVICE_KEY

# The same caps as the session backend (tests/fixtures/servers.py), so both sides agree.
LIMITS = LimitSettings(max_tokens_cap=256, default_max_tokens=8)
# What a new conversation samples at when it names no temperature, as shipped (the suite runs
# greedy: tests/conftest.py).
PRODUCT_TEMPERATURE: float = LimitSettings.model_fields["default_temperature"].default


def _in_process(
    engine: TransformersEngine, database: Path, limits: LimitSettings
) -> PortalChatService:
    """The monolith's service on the shared engine and its own SQLite file."""
    return PortalChatService.around(
        ChatService.open(
            EngineSettings(),
            StoreSettings(database_url=f"sqlite:///{database}"),
            limits,
            engine=engine,
        )
    )


@pytest.fixture(params=["in-process", "http"])
def chat_service(
    request: pytest.FixtureRequest, embedded_engine: TransformersEngine, tmp_path: Path
) -> Iterator[ChatServiceProtocol]:
    if request.param == "in-process":
        service = _in_process(embedded_engine, tmp_path / "contract.sqlite3", LIMITS)
        yield service
        service.close()
        return
    client = HttpChatService(request.getfixturevalue("backend_server").url)
    yield client
    client.close()


@pytest.fixture(params=["in-process", "http"])
def shipped_service(
    request: pytest.FixtureRequest, embedded_engine: TransformersEngine, tmp_path: Path
) -> Iterator[ChatServiceProtocol]:
    """Each transport with the shipped default temperature, not the suite's greedy one."""
    if request.param == "in-process":
        limits = LIMITS.model_copy(update={"default_temperature": PRODUCT_TEMPERATURE})
        service = _in_process(embedded_engine, tmp_path / "shipped.sqlite3", limits)
        yield service
        service.close()
        return
    start_backend = request.getfixturevalue("start_backend")
    backend = start_backend(CHATBOT_DEFAULT_TEMPERATURE=str(PRODUCT_TEMPERATURE))
    client = HttpChatService(backend.url)
    yield client
    client.close()


ServiceFor = Callable[[User], ChatServiceProtocol]


@pytest.fixture
def service_for(
    request: pytest.FixtureRequest, chat_service: ChatServiceProtocol
) -> Iterator[ServiceFor]:
    """``service_for(user)``: the transport under test acting for ``user``, as the UI binds it.

    Over HTTP that takes the backend's service key (the UI's): only with it may a client name
    the user it acts for.
    """
    if isinstance(chat_service, PortalChatService):
        yield chat_service.for_user
        return
    keyed = HttpChatService(request.getfixturevalue("backend_server").url, SESSION_SERVICE_KEY)
    yield keyed.for_user
    keyed.close()
