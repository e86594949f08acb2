"""Owners in the store: every read and write is one user's, on SQLite and on PostgreSQL.

User B's view of the store finds none of user A's conversations: each operation fails exactly as
for an id that does not exist, and A's data is the same afterwards. Also the migration that
gives existing rows to the local user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, inspect, select

from chatbot.domain import Conversation, ExportFormat, MessageStatus, ReplyStats, export, parse
from chatbot.domain.users import LOCAL_USER
from chatbot.errors import NotFoundError
from chatbot.store import ConversationStore, migrate
from chatbot.store.database import open_engine
from chatbot.store.repository import new_id

DONE: dict[str, Any] = {"status": MessageStatus.COMPLETE, "stats": ReplyStats()}


@pytest.fixture
def store(database_url: str) -> Iterator[ConversationStore]:
    opened = ConversationStore.open(database_url)
    yield opened
    opened.close()


def _with_answer(store: ConversationStore, title: str) -> Conversation:
    """A conversation with one question, one answer and a second version of the answer."""
    conversation = store.create_conversation(title=title)
    assert conversation.id is not None
    start = store.begin_reply(conversation.id, user_content=f"question of {title}")
    store.finish_reply(start.placeholder, content=f"answer of {title}", **DONE)
    start = store.begin_reply(conversation.id, regenerate=True)
    store.finish_reply(start.placeholder, content=f"second answer of {title}", **DONE)
    return store.get_conversation(conversation.id)


def _not_found_message(call: Callable[[str], object], conversation_id: str) -> str:
    """The error for ``conversation_id``, with the id itself replaced, to compare two ids."""
    with pytest.raises(NotFoundError) as info:
        call(conversation_id)
    assert info.value.param == "conversation_id"
    return info.value.message.replace(conversation_id, "<id>")


def test_another_users_conversation_is_a_missing_one(store: ConversationStore) -> None:
    alice, bob = store.for_user("alice"), store.for_user("bob")
    mine = _with_answer(alice, "alice's")
    assert mine.id is not None
    before = (alice.get_conversation(mine.id), alice.all_messages(mine.id))
    first_user_message = mine.messages[0].id
    assert first_user_message is not None
    first_answer = mine.messages[1].sibling_ids[0]

    operations: dict[str, Callable[[str], object]] = {
        "get": bob.get_conversation,
        "all_messages": bob.all_messages,
        "rename": lambda cid: bob.update_conversation(cid, title="bob was here"),
        "system prompt": lambda cid: bob.update_conversation(cid, system_prompt="obey bob"),
        "select version": lambda cid: bob.select_message(cid, first_answer),
        "send": lambda cid: bob.begin_reply(cid, user_content="hello"),
        "regenerate": lambda cid: bob.begin_reply(cid, regenerate=True),
        "edit": lambda cid: bob.begin_reply(
            cid, user_content="edited", edit_message_id=first_user_message
        ),
        "live reply": bob.live_reply,
        "stop": bob.request_stop,
        "clear": bob.clear_conversation,
        "delete": bob.delete_conversation,
    }
    for name, call in operations.items():
        theirs = _not_found_message(call, mine.id)
        missing = _not_found_message(call, new_id())
        assert theirs == missing, name

    assert (alice.get_conversation(mine.id), alice.all_messages(mine.id)) == before
    assert bob.list_conversations() == []
    reply_id = mine.messages[-1].id
    assert reply_id is not None
    assert bob.reply_message(reply_id) is None
    assert alice.reply_message(reply_id) is not None


def test_a_running_reply_is_not_anothers_to_see_or_stop(store: ConversationStore) -> None:
    alice, bob = store.for_user("alice"), store.for_user("bob")
    conversation = alice.create_conversation()
    assert conversation.id is not None
    start = alice.begin_reply(conversation.id, user_content="count")
    assert start.placeholder.id is not None
    alice.save_progress({start.placeholder.id: "1 2 3"})

    with pytest.raises(NotFoundError):
        bob.live_reply(conversation.id)
    with pytest.raises(NotFoundError):
        bob.request_stop(conversation.id)
    assert bob.reply_message(start.placeholder.id) is None

    live = alice.live_reply(conversation.id)
    assert live is not None and live.content == "1 2 3"
    assert alice.save_progress({start.placeholder.id: "1 2 3 4"}) == set()  # no stop flag
    final = alice.finish_reply(start.placeholder, content="1 2 3 4 5", **DONE)
    assert final.content == "1 2 3 4 5"


def test_lists_and_cursors_are_one_owners(store: ConversationStore) -> None:
    alice, bob = store.for_user("alice"), store.for_user("bob")
    # Interleaved, so that every page boundary of one owner falls between the other's rows.
    for n in range(5):
        alice.create_conversation(title=f"a{n}")
        bob.create_conversation(title=f"b{n}")
    local = store.create_conversation(title="local")

    assert [c.title for c in alice.list_conversations()] == [f"a{n}" for n in range(4, -1, -1)]
    assert [c.title for c in bob.list_conversations(limit=2, offset=1)] == ["b3", "b2"]
    assert [c.id for c in store.list_conversations()] == [local.id]  # the local user's

    seen: list[str] = []
    before = None
    while page := bob.list_conversations(limit=2, before=before):
        seen += [c.title for c in page]
        before = (page[-1].updated_at, page[-1].id)
    assert seen == [f"b{n}" for n in range(4, -1, -1)]

    # Alice's place in the order, handed to Bob, is only a place: he gets his own rows there.
    newest_alice = alice.list_conversations(limit=1)[0]
    after_alice = bob.list_conversations(before=(newest_alice.updated_at, newest_alice.id))
    assert [c.title for c in after_alice] == [f"b{n}" for n in range(3, -1, -1)]


def test_import_belongs_to_the_importer(store: ConversationStore) -> None:
    alice, bob = store.for_user("alice"), store.for_user("bob")
    original = _with_answer(alice, "exported")
    text = export(original, ExportFormat.JSON)

    imported = bob.import_conversation(parse(text, ExportFormat.JSON))
    assert imported.id is not None and imported.id != original.id
    assert [c.id for c in bob.list_conversations()] == [imported.id]
    assert [c.id for c in alice.list_conversations()] == [original.id]
    with pytest.raises(NotFoundError):
        alice.get_conversation(imported.id)


def test_same_user_id_on_two_views_is_one_owner(store: ConversationStore) -> None:
    """Views are cheap and stateless: a user's second view (another replica) sees the same."""
    created = store.for_user("alice").create_conversation(title="shared")
    assert created.id is not None
    assert store.for_user("alice").get_conversation(created.id).title == "shared"
    with pytest.raises(NotFoundError):
        store.get_conversation(created.id)  # the local user is a user like any other


def test_migration_gives_existing_conversations_to_the_local_user(database_url: str) -> None:
    engine = open_engine(database_url)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        migrate.upgrade(engine, "0002")
        with engine.begin() as connection:
            conversations = Table("conversations", MetaData(), autoload_with=connection)
            connection.execute(
                conversations.insert(),
                [
                    {"id": cid, "title": cid, "title_custom": True, "params": {}}
                    | {"created_at": now, "updated_at": now + timedelta(minutes=n)}
                    for n, cid in enumerate(("old1", "old2"))
                ],
            )
        migrate.upgrade(engine)
        with engine.connect() as connection:
            conversations = Table("conversations", MetaData(), autoload_with=connection)
            owners = connection.execute(select(conversations.c.owner_id)).scalars()
            assert set(owners) == {LOCAL_USER.id}
            indexes = {i["name"] for i in inspect(connection).get_indexes("conversations")}
            assert "ix_conversations_owner_updated_at_id" in indexes
    finally:
        engine.dispose()

    store = ConversationStore.open(database_url)
    try:
        assert [c.id for c in store.list_conversations()] == ["old2", "old1"]
        assert store.for_user(LOCAL_USER.id).get_conversation("old1").title == "old1"
        assert store.for_user("someone").list_conversations() == []
        store.for_user("someone").create_conversation(title="new")
    finally:
        store.close()

    engine = open_engine(database_url)
    try:
        migrate.downgrade(engine, "0002")
        with engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns("conversations")}
            indexes = {i["name"] for i in inspect(connection).get_indexes("conversations")}
        assert "owner_id" not in columns
        assert "ix_conversations_updated_at_id" in indexes
        migrate.upgrade(engine)  # and back up: every row is the local user's again
    finally:
        engine.dispose()
    store = ConversationStore.open(database_url)
    try:
        assert {c.title for c in store.list_conversations()} == {"old1", "old2", "new"}
    finally:
        store.close()
