"""Owners through both transports: a service bound to a user sees that user's conversations only.

In process (``PortalChatService.for_user``) and over HTTP (``HttpChatService.for_user``: the
service key plus ``X-Chatbot-User``/``X-Chatbot-User-Name``, percent-encoded, against a real
backend), another user's conversation is a NotFoundError like a missing one.
"""

from __future__ import annotations

import uuid

import pytest

from chatbot.domain import ExportFormat, GenerationParams, ReplyEventType
from chatbot.domain.users import User
from chatbot.errors import NotFoundError
from chatbot.service.protocol import ChatServiceProtocol
from tests.client.conftest import ServiceFor

pytestmark = pytest.mark.slow

SHORT = GenerationParams(max_new_tokens=4)
MISSING = "0" * 32


def _user(name: str) -> User:
    """A user of this test only (the session backend is shared), with a name beyond latin-1."""
    return User(id=f"https://issuer.example#{name}-{uuid.uuid4().hex[:8]}", name=f"{name} Ünï 🙂")


def test_a_bound_service_sees_its_users_conversations_only(
    chat_service: ChatServiceProtocol, service_for: ServiceFor
) -> None:
    alice, bob = service_for(_user("alice")), service_for(_user("bob"))
    assert isinstance(alice, ChatServiceProtocol)
    mine = alice.create_conversation(title="alice's", params=SHORT)
    cid = mine.id or ""
    events = list(alice.send_message(cid, "Hello"))
    assert events[-1].type is ReplyEventType.DONE
    assert [c.id for c in alice.list_conversations()] == [cid]
    before = alice.get_conversation(cid)

    assert bob.list_conversations() == []
    assert cid not in {c.id for c in chat_service.list_conversations()}  # the local user
    for call in (
        bob.get_conversation,
        bob.stop,
        lambda c: list(bob.attach(c)),
        lambda c: list(bob.send_message(c, "mine now")),
        lambda c: bob.update_conversation(c, title="bob's"),
        lambda c: bob.export_conversation(c, ExportFormat.JSON),
        bob.clear_conversation,
        bob.delete_conversation,
    ):
        with pytest.raises(NotFoundError) as theirs:
            call(cid)
        with pytest.raises(NotFoundError) as missing:
            call(MISSING)
        assert theirs.value.message.replace(cid, MISSING) == missing.value.message

    copy = bob.import_conversation(
        alice.export_conversation(cid, ExportFormat.JSON), ExportFormat.JSON
    )
    assert [c.id for c in bob.list_conversations()] == [copy.id]
    assert [c.id for c in alice.list_conversations()] == [cid]
    assert alice.get_conversation(cid) == before  # nothing of B's calls reached it
