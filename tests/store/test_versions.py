"""Reply versions in the store: the message tree, the selected branch, the migration.

The same suite on SQLite and on a real PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import MetaData, Table, select

from chatbot.domain import ExportFormat, Message, MessageStatus, ReplyStats, export
from chatbot.errors import ConflictError, NotFoundError
from chatbot.store import ConversationStore, migrate
from chatbot.store.database import open_engine
from chatbot.store.models import MessageRow
from chatbot.store.tree import MessageTree

DONE = {"status": MessageStatus.COMPLETE, "stats": ReplyStats()}


@pytest.fixture
def store(database_url: str) -> Iterator[ConversationStore]:
    opened = ConversationStore.open(database_url)
    yield opened
    opened.close()


def _answer(store: ConversationStore, cid: str, text: str, **how: str | bool) -> Message:
    start = store.begin_reply(cid, **how)  # type: ignore[arg-type]
    return store.finish_reply(start.placeholder, content=text, **DONE)  # type: ignore[arg-type]


def _texts(messages: tuple[Message, ...]) -> list[str]:
    return [m.content for m in messages]


def _new(store: ConversationStore) -> str:
    cid = store.create_conversation().id
    assert cid is not None
    return cid


def test_tree_paths_and_siblings() -> None:
    def row(mid: str, parent: str | None, position: int) -> MessageRow:
        return MessageRow(id=mid, parent_id=parent, position=position)

    # u1 -> a1, a2 (regenerated); u1' (edited u1) -> b1
    rows = [("a2", "u1", 2), ("u1", None, 0), ("a1", "u1", 1), ("u1e", None, 3), ("b1", "u1e", 4)]
    tree = MessageTree(row(*fields) for fields in rows)
    assert [r.id for r in tree.path("a1")] == ["u1", "a1"]
    assert [r.id for r in tree.selected_path(None)] == ["u1e", "b1"]  # newest when unset
    assert [r.id for r in tree.selected_path("gone")] == ["u1e", "b1"]
    assert tree.sibling_ids(tree.by_id["a2"]) == ("a1", "a2")
    assert tree.sibling_ids(tree.by_id["u1"]) == ("u1", "u1e")
    assert tree.last_seen_leaf_under(tree.by_id["u1"]).id == "a2"  # never seen: the newest
    tree.by_id["a1"].selected_at = datetime(2026, 1, 1, tzinfo=UTC)
    assert tree.last_seen_leaf_under(tree.by_id["u1"]).id == "a1"  # the one last on screen
    assert tree.next_position() == 5
    assert MessageTree([]).selected_path(None) == [] and MessageTree([]).next_position() == 0


def test_regenerate_twice_keeps_three_versions(store: ConversationStore) -> None:
    cid = _new(store)
    _answer(store, cid, "one", user_content="Name a fruit.")
    _answer(store, cid, "two", regenerate=True)
    third = _answer(store, cid, "three", regenerate=True)

    user, reply = store.get_conversation(cid).messages
    assert reply == third  # the newest version is on screen, as finish_reply returned it
    assert (reply.version, reply.versions) == (3, 3)
    assert (user.version, user.versions) == (1, 1) and reply.parent_id == user.id
    assert user.parent_id is None

    tree = store.all_messages(cid)
    assert _texts(tuple(tree)) == ["Name a fruit.", "one", "two", "three"]
    assert all(m.parent_id == user.id for m in tree[1:])
    first_id = reply.sibling_ids[0]
    shown = store.select_message(cid, first_id)
    assert _texts(shown.messages) == ["Name a fruit.", "one"]
    assert shown.messages[1].version == 1
    assert _texts(store.get_conversation(cid).messages) == ["Name a fruit.", "one"]
    # Exports hold the selected branch only.
    csv_text = export(store.get_conversation(cid), ExportFormat.CSV)
    assert csv_text.splitlines() == ["is_user,text", "True,Name a fruit.", "False,one"]
    json_text = export(store.get_conversation(cid), ExportFormat.JSON)
    assert '"one"' in json_text and '"two"' not in json_text and '"three"' not in json_text

    # A new message continues the selected branch.
    _answer(store, cid, "four", user_content="Another?")
    messages = store.get_conversation(cid).messages
    assert _texts(messages) == ["Name a fruit.", "one", "Another?", "four"]
    assert messages[2].parent_id == first_id


def test_edit_starts_a_branch_and_the_old_one_comes_back(store: ConversationStore) -> None:
    cid = _new(store)
    _answer(store, cid, "a1", user_content="first")
    _answer(store, cid, "a2", user_content="second")
    original = store.get_conversation(cid).messages[0]
    assert original.id is not None

    start = store.begin_reply(cid, user_content="first, edited", edit_message_id=original.id)
    assert [m.content for m in start.conversation.messages] == ["first, edited"]  # the prompt
    store.finish_reply(start.placeholder, content="b1", **DONE)  # type: ignore[arg-type]
    edited = store.get_conversation(cid)
    assert _texts(edited.messages) == ["first, edited", "b1"]
    assert edited.title == "first, edited"
    assert edited.messages[0].sibling_ids == (original.id, start.user_message.id)  # type: ignore[union-attr]
    assert (edited.messages[0].version, edited.messages[0].versions) == (2, 2)

    back = store.select_message(cid, original.id)
    assert _texts(back.messages) == ["first", "a1", "second", "a2"]  # the whole old branch
    assert back.title == "first"  # the automatic title follows the branch on screen
    assert back.messages[0].version == 1

    # Selecting a message already on the branch changes nothing.
    assert store.select_message(cid, back.messages[2].id or "").messages == back.messages
    store.update_conversation(cid, title="Mine")
    assert store.select_message(cid, start.user_message.id or "").title == "Mine"  # type: ignore[union-attr]


def test_switching_back_returns_to_the_version_last_seen(store: ConversationStore) -> None:
    cid = _new(store)
    _answer(store, cid, "one", user_content="hi")
    _answer(store, cid, "two", regenerate=True)
    _answer(store, cid, "three", regenerate=True)
    user, reply = store.get_conversation(cid).messages
    store.select_message(cid, reply.sibling_ids[1])  # "two" on screen
    _answer(store, cid, "edited reply", user_content="hello", edit_message_id=user.id or "")
    back = store.select_message(cid, user.id or "")
    assert _texts(back.messages) == ["hi", "two"]  # not the newest ("three")
    assert (back.messages[1].version, back.messages[1].versions) == (2, 3)


def test_select_refusals(store: ConversationStore) -> None:
    cid = _new(store)
    _answer(store, cid, "r1", user_content="hi")
    other = _new(store)
    _answer(store, other, "r", user_content="elsewhere")
    foreign = store.get_conversation(other).messages[0].id or ""
    for bad in ("nope", foreign):
        with pytest.raises(NotFoundError) as info:
            store.select_message(cid, bad)
        assert info.value.param == "message_id"
    with pytest.raises(NotFoundError) as missing:
        store.select_message("no-such-conversation", foreign)
    assert missing.value.param == "conversation_id"

    first = store.get_conversation(cid).messages[1].id or ""
    store.begin_reply(cid, regenerate=True)  # streaming now
    with pytest.raises(ConflictError):
        store.select_message(cid, first)
    assert store.get_conversation(cid).messages[-1].status is MessageStatus.STREAMING


def test_clear_and_import_are_single_branches(store: ConversationStore) -> None:
    cid = _new(store)
    _answer(store, cid, "r1", user_content="hi")
    _answer(store, cid, "r2", regenerate=True)
    assert store.clear_conversation(cid).messages == ()
    _answer(store, cid, "fresh", user_content="again")
    assert _texts(store.get_conversation(cid).messages) == ["again", "fresh"]

    imported = store.import_conversation(store.get_conversation(cid))
    assert imported.id is not None
    messages = store.get_conversation(imported.id).messages
    assert messages == imported.messages
    assert messages[1].parent_id == messages[0].id and messages[0].parent_id is None
    assert all(m.versions == 1 for m in messages)


def test_versions_are_shared_by_replicas(database_url: str) -> None:
    first = ConversationStore.open(database_url, owner_id="replica-a")
    second = ConversationStore.open(database_url, owner_id="replica-b")
    try:
        cid = _new(first)
        _answer(first, cid, "from a", user_content="hi")
        _answer(second, cid, "from b", regenerate=True)
        seen = first.get_conversation(cid).messages[-1]
        assert (seen.content, seen.version, seen.versions) == ("from b", 2, 2)
        first.select_message(cid, seen.sibling_ids[0])
        assert second.get_conversation(cid).messages[-1].content == "from a"
    finally:
        first.close()
        second.close()


def test_migration_makes_existing_rows_one_branch_and_downgrade_keeps_it(
    database_url: str,
) -> None:
    engine = open_engine(database_url)
    try:
        migrate.upgrade(engine, "0001")
        now = datetime(2026, 1, 1, tzinfo=UTC)
        with engine.begin() as connection:
            meta = MetaData()
            conversations = Table("conversations", meta, autoload_with=connection)
            messages = Table("messages", meta, autoload_with=connection)
            connection.execute(
                conversations.insert(),
                [
                    {"id": cid, "title": cid, "title_custom": False, "params": {}}
                    | {"created_at": now, "updated_at": now}
                    for cid in ("c1", "c2")
                ],
            )
            connection.execute(
                messages.insert(),
                [
                    {"id": f"m{n}", "conversation_id": "c1", "position": n}
                    | {"role": ("user", "assistant")[n % 2], "content": f"t{n}"}
                    | {"status": "complete", "created_at": now, "stop_requested": False}
                    for n in range(4)
                ],
            )
        migrate.upgrade(engine)
    finally:
        engine.dispose()

    store = ConversationStore.open(database_url)
    try:
        old = store.get_conversation("c1").messages
        assert [m.id for m in old] == ["m0", "m1", "m2", "m3"]
        assert [m.parent_id for m in old] == [None, "m0", "m1", "m2"]
        assert store.get_conversation("c2").messages == ()
        _answer(store, "c1", "t5", regenerate=True)  # m3 gets a sibling, which is selected
        assert store.get_conversation("c1").messages[-1].versions == 2
    finally:
        store.close()

    engine = open_engine(database_url)
    try:
        migrate.downgrade(engine, "0001")
        with engine.connect() as connection:
            messages = Table("messages", MetaData(), autoload_with=connection)
            kept = connection.execute(
                select(messages.c.content).order_by(messages.c.position)
            ).scalars()
            assert list(kept) == ["t0", "t1", "t2", "t5"]  # the selected branch only
    finally:
        engine.dispose()
