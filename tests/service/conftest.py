"""A ChatService on each store (SQLite file, PostgreSQL database) with the embedded model.

A test module whose subject is not the model overrides ``service_engine`` (the owners tests
put the scripted engine there).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatbot.config import LimitSettings
from chatbot.engine import Engine
from chatbot.engine.transformers_engine import TransformersEngine
from chatbot.service.local import ChatService
from chatbot.service.portal import PortalChatService
from chatbot.store import ConversationStore


@pytest.fixture
def service_engine(embedded_engine: TransformersEngine) -> Engine:
    """The engine the ``service`` fixture runs."""
    return embedded_engine


@pytest.fixture
def service(database_url: str, service_engine: Engine) -> Iterator[PortalChatService]:
    """The async service behind the sync contract, as the monolith's UI uses it."""
    chat = PortalChatService.around(
        ChatService(service_engine, ConversationStore.open(database_url), LimitSettings())
    )
    yield chat
    chat.close()
