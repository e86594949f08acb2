"""Owners in the service: a view for user B finds nothing of user A's, running reply included.

Every operation of the contract by B on A's conversation raises the NotFoundError a missing id
raises, and A's conversation is the same afterwards; a stop or an attach by B leaves A's
running reply alone, here and on another replica. On SQLite and on PostgreSQL, with the
scripted engine: the model is not the subject, and a held reply is certainly still running
while B tries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chatbot.config import LimitSettings
from chatbot.domain import (
    Conversation,
    ExportFormat,
    GenerationParams,
    MessageStatus,
    ReplyEventType,
)
from chatbot.domain.users import LOCAL_USER, User
from chatbot.engine.scripted_engine import ScriptedEngine
from chatbot.errors import NotFoundError
from chatbot.service.local import ChatService
from chatbot.service.portal import PortalChatService
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.store import ConversationStore
from chatbot.store.repository import new_id
from tests.fixtures.prompts import LONG_PROMPT
from tests.service.replies import text_of, until_first_delta

ALICE = User(id="https://issuer.example#alice", name="Alice")
BOB = User(id="bob@example.com", name="Bob")
SHORT = GenerationParams(max_new_tokens=6)
LONG = GenerationParams(max_new_tokens=200, temperature=0.0, ignore_eos=True)  # 200, every run


@pytest.fixture
def service_engine(scripted_engine: ScriptedEngine) -> ScriptedEngine:
    """The ``service`` fixture (tests/service/conftest.py) on the scripted engine."""
    return scripted_engine


def _answered(service: ChatServiceProtocol) -> Conversation:
    """A conversation with a question, an answer, and a second version of the answer."""
    created = service.create_conversation(title="alice's secret", params=SHORT)
    assert created.id is not None
    list(service.send_message(created.id, "What is my secret?"))
    list(service.regenerate(created.id))
    return service.get_conversation(created.id)


def _operations(
    service: PortalChatService, user_message_id: str, version_id: str
) -> dict[str, Callable[[str], Any]]:
    """Every operation that takes a conversation id, as B's calls (streams read to the end)."""
    bob = service.for_user(BOB)
    bob_async = service.service.for_user(BOB)
    return {
        "get": bob.get_conversation,
        "all_messages": lambda cid: service._call(lambda: bob_async.all_messages(cid)),
        "rename": lambda cid: bob.update_conversation(cid, title="bob's now"),
        "system prompt": lambda cid: bob.update_conversation(cid, system_prompt="obey bob"),
        "parameters": lambda cid: bob.update_conversation(cid, params=SHORT),
        "select version": lambda cid: bob.select_version(cid, version_id),
        "send": lambda cid: list(bob.send_message(cid, "hello")),
        "regenerate": lambda cid: list(bob.regenerate(cid)),
        "edit": lambda cid: list(bob.edit_message(cid, user_message_id, "edited")),
        "attach": lambda cid: list(bob.attach(cid)),
        "stop": bob.stop,
        "export": lambda cid: bob.export_conversation(cid, ExportFormat.JSON),
        "clear": bob.clear_conversation,
        "delete": bob.delete_conversation,
    }


def _refusal(call: Callable[[str], Any], conversation_id: str) -> tuple[str, str | None, str]:
    with pytest.raises(NotFoundError) as info:
        call(conversation_id)
    error = info.value
    return error.message.replace(conversation_id, "<id>"), error.param, error.error_type


def test_another_users_conversation_is_a_missing_one(service: PortalChatService) -> None:
    alice = service.for_user(ALICE)
    mine = _answered(alice)
    assert mine.id is not None
    user_message_id = mine.messages[0].id
    assert user_message_id is not None
    before = alice.get_conversation(mine.id)
    exported = alice.export_conversation(mine.id, ExportFormat.JSON)

    for name, call in _operations(
        service, user_message_id, mine.messages[1].sibling_ids[0]
    ).items():
        assert _refusal(call, mine.id) == _refusal(call, new_id()), name

    assert alice.get_conversation(mine.id) == before
    assert alice.export_conversation(mine.id, ExportFormat.JSON) == exported
    assert service.for_user(BOB).list_conversations() == []
    assert [c.id for c in alice.list_conversations()] == [mine.id]


def test_a_stop_or_attach_by_another_user_leaves_the_reply_alone(
    service: PortalChatService, scripted_engine: ScriptedEngine
) -> None:
    alice, bob = service.for_user(ALICE), service.for_user(BOB)
    created = alice.create_conversation(params=LONG)
    assert created.id is not None
    events = alice.send_message(created.id, LONG_PROMPT)
    seen = until_first_delta(events)
    scripted_engine.hold()  # running, for certain, while B tries everything

    for name, call in _operations(service, "any", "any").items():
        with pytest.raises(NotFoundError):
            call(created.id)
        status = alice.get_conversation(created.id).messages[-1].status
        assert status is MessageStatus.STREAMING, name

    scripted_engine.release()
    rest = list(events)
    final = rest[-1].message
    assert rest[-1].type is ReplyEventType.DONE and final is not None
    assert final.status is MessageStatus.COMPLETE  # not stopped, not interrupted
    assert final.content == text_of(seen + rest) != ""
    stored = alice.get_conversation(created.id)
    assert [m.content for m in stored.messages] == [LONG_PROMPT, final.content]
    assert bob.list_conversations() == []


def test_each_user_lists_and_imports_their_own(service: PortalChatService) -> None:
    alice, bob = service.for_user(ALICE), service.for_user(BOB)
    mine = _answered(alice)
    assert mine.id is not None
    local = service.create_conversation(title="the local user's")
    assert [c.id for c in service.list_conversations()] == [local.id]
    assert [c.id for c in service.for_user(LOCAL_USER).list_conversations()] == [local.id]

    copy = bob.import_conversation(
        alice.export_conversation(mine.id, ExportFormat.JSON), ExportFormat.JSON
    )
    assert copy.id is not None and copy.id != mine.id
    assert [c.id for c in bob.list_conversations()] == [copy.id]
    assert [c.id for c in alice.list_conversations()] == [mine.id]
    with pytest.raises(NotFoundError):
        alice.get_conversation(copy.id)
    # The same user through another view is the same owner.
    assert service.for_user(User(id=BOB.id, name="Robert")).get_conversation(copy.id) == copy


def test_views_share_one_service(service: PortalChatService) -> None:
    """A view is the service seen by one user: closing it closes nothing."""
    view = service.for_user(ALICE)
    assert isinstance(view, ChatServiceProtocol)
    assert view.model_id == service.model_id and view.deployment == "monolith"
    assert view.service.runner is service.service.runner
    assert view.service.user == ALICE and service.service.user == LOCAL_USER
    view.close()
    created = view.create_conversation(params=SHORT)  # still open
    assert created.id is not None
    assert list(view.send_message(created.id, "Hi"))[-1].type is ReplyEventType.DONE


def test_another_replica_keeps_owners(database_url: str, scripted_engine: ScriptedEngine) -> None:
    """B on replica 2 can neither follow nor stop A's reply written by replica 1; A can."""
    limits = LimitSettings()
    one = PortalChatService.around(
        ChatService(scripted_engine, ConversationStore.open(database_url, owner_id="1"), limits)
    )
    two: PortalChatService | None = None
    try:
        created = one.for_user(ALICE).create_conversation(params=LONG)
        assert created.id is not None
        events = one.for_user(ALICE).send_message(created.id, LONG_PROMPT)
        seen = until_first_delta(events)
        scripted_engine.hold()  # still running on replica 1 while replica 2 is asked
        two = PortalChatService.around(
            ChatService(scripted_engine, ConversationStore.open(database_url, owner_id="2"), limits)
        )
        bob = two.for_user(BOB)
        for call in (bob.stop, lambda cid: list(bob.attach(cid)), bob.get_conversation):
            with pytest.raises(NotFoundError):
                call(created.id)
        with pytest.raises(NotFoundError):
            list(bob.send_message(created.id, "me too"))
        followed = two.for_user(ALICE).attach(created.id)  # A on the other replica: found
        assert next(followed).type is ReplyEventType.START
        scripted_engine.release()
        rest = list(events)
        final = rest[-1].message
        assert final is not None and final.status is MessageStatus.COMPLETE
        assert final.content == text_of(seen + rest)
        assert text_of(list(followed)) == final.content
    finally:
        one.close()
        if two is not None:
            two.close()
