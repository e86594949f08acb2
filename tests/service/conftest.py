"""A ChatService on each store (SQLite file, PostgreSQL database) with the embedded model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatbot.config import LimitSettings
from chatbot.engine.transformers_engine import TransformersEngine
from chatbot.service.local import ChatService
from chatbot.service.portal import PortalChatService
from chatbot.store import ConversationStore


@pytest.fixture
def service(database_url: str, embedded_engine: TransformersEngine) -> Iterator[PortalChatService]:
    """The async service behind the sync contract, as the monolith's UI uses it."""
    chat = PortalChatService.around(
        ChatService(embedded_engine, ConversationStore.open(database_url), LimitSettings())
    )
    yield chat
    chat.close()
