"""ConversationStore on SQLite and on a real PostgreSQL: the same suite for both."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text, update

from chatbot.domain import (
    GenerationParams,
    Message,
    MessageStatus,
    ReplyStats,
)
from chatbot.domain.messages import utc_now
from chatbot.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    UnavailableError,
)
from chatbot.store import ConversationStore, ReplyStart, derive_title
from chatbot.store.liveness import current_owner_id
from chatbot.store.models import Base, MessageRow
from tests.fixtures.databases import PostgresServer, free_port
from tests.fixtures.waiting import wait_until


@pytest.fixture
def store(database_url: str) -> Iterator[ConversationStore]:
    opened = ConversationStore.open(database_url)
    yield opened
    opened.close()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_crud(store: ConversationStore) -> None:
    created = store.create_conversation(
        system_prompt="Be brief.", params=GenerationParams(max_new_tokens=7)
    )
    assert created.id and created.title == "New conversation"
    loaded = store.get_conversation(created.id)
    assert loaded.system_prompt == "Be brief." and loaded.params.max_new_tokens == 7
    assert loaded.created_at is not None and loaded.created_at.tzinfo is not None

    renamed = store.update_conversation(created.id, title="Renamed", system_prompt="")
    assert renamed.title == "Renamed" and renamed.system_prompt is None

    start = store.begin_reply(created.id, user_content="Hi there")
    assert store.get_conversation(created.id).title == "Renamed"  # a rename is kept
    store.finish_reply(
        start.placeholder, content="Hello", status=MessageStatus.COMPLETE, stats=ReplyStats()
    )
    cleared = store.clear_conversation(created.id)
    assert cleared.messages == () and cleared.title == "Renamed"
    assert store.get_conversation(created.id).messages == ()

    store.delete_conversation(created.id)
    with pytest.raises(NotFoundError) as info:
        store.get_conversation(created.id)
    assert info.value.param == "conversation_id"
    with pytest.raises(NotFoundError):
        store.delete_conversation(created.id)


def test_pagination_newest_activity_first(store: ConversationStore) -> None:
    ids = [store.create_conversation(title=f"c{i}").id for i in range(7)]
    assert ids[-1] is not None
    pages = [store.list_conversations(limit=3, offset=offset) for offset in (0, 3, 6)]
    assert [len(p) for p in pages] == [3, 3, 1]
    listed = [s.id for page in pages for s in page]
    assert listed == list(reversed(ids))
    # Activity moves a conversation to the top; its message count is shown.
    oldest = ids[0]
    assert oldest is not None
    start = store.begin_reply(oldest, user_content="bump")
    store.finish_reply(
        start.placeholder, content="ok", status=MessageStatus.COMPLETE, stats=ReplyStats()
    )
    top = store.list_conversations(limit=1)[0]
    assert top.id == oldest and top.message_count == 2


def test_keyset_pages_hold_still_while_conversations_are_added(store: ConversationStore) -> None:
    ids = [store.create_conversation(title=f"c{i}").id for i in range(5)]
    seen: list[str] = []
    before = None
    while True:
        page = store.list_conversations(limit=2, before=before)
        store.create_conversation(title="added while paging")  # newest: before every cursor
        if not page:
            break
        seen += [s.id for s in page]
        before = (page[-1].updated_at, page[-1].id)  # microseconds survive the round trip
    assert seen == list(reversed(ids))


def test_messages_are_rows_in_order_with_stats(store: ConversationStore) -> None:
    conversation_id = store.create_conversation().id
    assert conversation_id is not None
    stats = ReplyStats(prompt_tokens=5, completion_tokens=3, duration_s=0.5)
    for i in range(3):
        start = store.begin_reply(conversation_id, user_content=f"question {i}")
        assert start.placeholder.status is MessageStatus.STREAMING
        store.finish_reply(
            start.placeholder, content=f"answer {i}", status=MessageStatus.COMPLETE, stats=stats
        )
    messages = store.get_conversation(conversation_id).messages
    assert [m.content for m in messages] == [
        "question 0", "answer 0", "question 1", "answer 1", "question 2", "answer 2"
    ]  # fmt: skip
    assert messages[1].stats == stats
    assert len({m.id for m in messages}) == 6


def test_automatic_title(store: ConversationStore) -> None:
    conversation_id = store.create_conversation().id
    assert conversation_id is not None
    long_line = "Tell me " + "about the history of the printing press " * 3
    start = store.begin_reply(conversation_id, user_content=f"\n  {long_line}\nsecond line")
    title = store.get_conversation(conversation_id).title
    assert title == derive_title(long_line) and len(title) <= 60 and title.endswith("…")
    assert start.conversation.title == title
    assert derive_title("  short  ") == "short"


def test_second_reply_conflicts(store: ConversationStore) -> None:
    conversation_id = store.create_conversation().id
    assert conversation_id is not None
    store.begin_reply(conversation_id, user_content="one")
    with pytest.raises(ConflictError):
        store.begin_reply(conversation_id, user_content="two")
    with pytest.raises(ConflictError):
        store.begin_reply(conversation_id, regenerate=True)
    # Nothing of the refused request was stored.
    assert [m.content for m in store.get_conversation(conversation_id).messages] == ["one", ""]


def test_conflict_across_replicas(database_url: str) -> None:
    first = ConversationStore.open(database_url, owner_id="replica-a")
    second = ConversationStore.open(database_url, owner_id="replica-b")
    try:
        conversation_id = first.create_conversation().id
        assert conversation_id is not None
        first.begin_reply(conversation_id, user_content="from a")
        with pytest.raises(ConflictError):
            second.begin_reply(conversation_id, user_content="from b")
        assert second.live_reply(conversation_id) is not None
    finally:
        first.close()
        second.close()


def test_regenerate_and_edit(store: ConversationStore) -> None:
    conversation_id = store.create_conversation().id
    assert conversation_id is not None
    done = {"status": MessageStatus.COMPLETE, "stats": ReplyStats()}
    first = store.begin_reply(conversation_id, user_content="first")
    store.finish_reply(first.placeholder, content="a1", **done)  # type: ignore[arg-type]
    second = store.begin_reply(conversation_id, user_content="second")
    store.finish_reply(second.placeholder, content="a2", **done)  # type: ignore[arg-type]

    again = store.begin_reply(conversation_id, regenerate=True)
    assert again.user_message is None
    assert [m.content for m in again.conversation.messages] == ["first", "a1", "second"]
    store.finish_reply(again.placeholder, content="a2 again", **done)  # type: ignore[arg-type]

    assert first.user_message is not None and first.user_message.id is not None
    edited = store.begin_reply(
        conversation_id, user_content="first, edited", edit_message_id=first.user_message.id
    )
    # The edit is a new version of the first message; the original stays as version 1.
    assert edited.user_message is not None and edited.user_message.id != first.user_message.id
    assert edited.user_message.sibling_ids == (first.user_message.id, edited.user_message.id)
    assert [m.content for m in edited.conversation.messages] == ["first, edited"]
    messages = store.get_conversation(conversation_id).messages
    assert [(m.content, m.status) for m in messages] == [
        ("first, edited", MessageStatus.COMPLETE),
        ("", MessageStatus.STREAMING),
    ]
    assert store.get_conversation(conversation_id).title == "first, edited"
    store.finish_reply(edited.placeholder, content="b", **done)  # type: ignore[arg-type]

    assert edited.placeholder.id is not None
    with pytest.raises(InvalidRequestError) as info:
        store.begin_reply(conversation_id, user_content="x", edit_message_id=edited.placeholder.id)
    assert info.value.param == "message_id"
    with pytest.raises(NotFoundError):
        store.begin_reply(conversation_id, user_content="x", edit_message_id="nope")


def test_progress_heartbeat_and_stop_flag(store: ConversationStore) -> None:
    conversation_id = store.create_conversation().id
    assert conversation_id is not None
    start = store.begin_reply(conversation_id, user_content="hi")
    placeholder_id = start.placeholder.id
    assert placeholder_id is not None
    assert store.save_progress({placeholder_id: "par"}) == set()
    assert store.get_conversation(conversation_id).messages[-1].content == "par"
    assert store.request_stop(conversation_id) is True
    assert store.save_progress({placeholder_id: "partial"}) == {placeholder_id}
    final = store.finish_reply(
        start.placeholder, content="partial!", status=MessageStatus.STOPPED, stats=ReplyStats()
    )
    assert final.status is MessageStatus.STOPPED
    # Finished rows are not touched by late progress writes.
    store.save_progress({placeholder_id: "late"})
    assert store.get_conversation(conversation_id).messages[-1].content == "partial!"
    assert store.request_stop(conversation_id) is False


def _streaming_row_owned_by(store: ConversationStore, owner: str, age_s: float = 0) -> str:
    conversation_id = store.create_conversation().id
    assert conversation_id is not None
    start = store.begin_reply(conversation_id, user_content="hello")
    store.save_progress({str(start.placeholder.id): "partial text"})
    with store._session(write=True) as session:
        session.execute(
            update(MessageRow)
            .where(MessageRow.id == start.placeholder.id)
            .values(owner_id=owner, heartbeat_at=utc_now() - timedelta(seconds=age_s))
        )
    return conversation_id


def _last(store: ConversationStore, conversation_id: str) -> Message:
    return store.get_conversation(conversation_id).messages[-1]


def test_open_marks_only_dead_replies_interrupted(database_url: str) -> None:
    me = current_owner_id()
    host = me.rsplit(":", 2)[0]
    store = ConversationStore.open(database_url, stale_after_s=5)
    try:
        live_elsewhere = _streaming_row_owned_by(store, "other-host:42:1")
        live_here = _streaming_row_owned_by(store, f"{host}:{os.getppid()}:0")
        stale = _streaming_row_owned_by(store, "other-host:43:1", age_s=60)
        dead_pid = _streaming_row_owned_by(store, f"{host}:{_dead_pid()}:1")
        earlier_run = _streaming_row_owned_by(store, f"{host}:{os.getpid()}:earlier")
    finally:
        store.close()

    reopened = ConversationStore.open(database_url, stale_after_s=5)
    try:
        for conversation_id in (live_elsewhere, live_here):
            assert _last(reopened, conversation_id).status is MessageStatus.STREAMING
        for conversation_id in (stale, dead_pid, earlier_run):
            message = _last(reopened, conversation_id)
            assert message.status is MessageStatus.INTERRUPTED
            assert message.content == "partial text"
        # A dead reply does not block the conversation; a live one does.
        reopened.begin_reply(stale, user_content="again")
        with pytest.raises(ConflictError):
            reopened.begin_reply(live_elsewhere, user_content="again")
    finally:
        reopened.close()


def test_stale_reply_is_taken_over(database_url: str) -> None:
    store = ConversationStore.open(database_url, stale_after_s=60)
    try:
        conversation_id = _streaming_row_owned_by(store, "other-host:42:1")
        assert store.live_reply(conversation_id) is not None
        # Its owner's heartbeat stops: a minute and more goes by (the clock moved, not slept).
        with store._session(write=True) as session:
            session.execute(
                update(MessageRow)
                .where(MessageRow.conversation_id == conversation_id)
                .where(MessageRow.owner_id == "other-host:42:1")
                .values(heartbeat_at=utc_now() - timedelta(seconds=61))
            )
        assert store.live_reply(conversation_id) is None
        assert _last(store, conversation_id).status is MessageStatus.INTERRUPTED
        store.begin_reply(conversation_id, user_content="next")
    finally:
        store.close()


def test_import_never_stores_streaming(store: ConversationStore) -> None:
    from chatbot.domain import Conversation

    imported = store.import_conversation(
        Conversation(
            messages=(
                Message.user("hi"),
                Message(role="assistant", content="par", status=MessageStatus.STREAMING),
            )
        )
    )
    assert imported.title == "hi"
    assert [m.status for m in imported.messages] == [
        MessageStatus.COMPLETE,
        MessageStatus.INTERRUPTED,
    ]
    assert imported.id is not None
    assert store.get_conversation(imported.id).messages == imported.messages


def test_migrations_match_models_and_indexes_exist(store: ConversationStore) -> None:
    with store._engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, Base.metadata) == []
        inspector = inspect(connection)
        index_names = {i["name"] for i in inspector.get_indexes("conversations")}
        index_names |= {i["name"] for i in inspector.get_indexes("messages")}
        unique_names = {u["name"] for u in inspector.get_unique_constraints("messages")}
    assert {"ix_conversations_owner_updated_at_id", "ux_messages_one_streaming"} <= index_names
    assert "uq_messages_conversation_position" in unique_names | index_names


def test_sqlite_settings(tmp_path: object) -> None:
    store = ConversationStore.open(f"sqlite:///{tmp_path}/s.sqlite3")
    try:
        with store._engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
    finally:
        store.close()


def test_opening_twice_is_harmless(database_url: str) -> None:
    ConversationStore.open(database_url).close()
    store = ConversationStore.open(database_url)
    try:
        assert store.list_conversations() == []
    finally:
        store.close()


def test_unreachable_database_is_unavailable(tmp_path: object) -> None:
    with pytest.raises(UnavailableError):
        ConversationStore.open(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    with pytest.raises(UnavailableError):
        ConversationStore.open(f"sqlite:///{tmp_path}/missing-folder/deeper/x.sqlite3")


@pytest.mark.postgres
def test_database_gone_mid_life_is_unavailable(postgres_cluster: PostgresServer) -> None:
    name = postgres_cluster.create_database()
    store = ConversationStore.open(postgres_cluster.url_for(name))
    try:
        conversation_id = store.create_conversation().id
        assert conversation_id is not None
        postgres_cluster.drop_database(name)
        with pytest.raises(UnavailableError):
            store.list_conversations()
        with pytest.raises(UnavailableError):
            store.begin_reply(conversation_id, user_content="hello")
    finally:
        store.close()


def _begin_racing(
    store: ConversationStore,
    conversation_id: str,
    text: str,
    barrier: threading.Barrier,
    results: list[ReplyStart | ConflictError],
) -> None:
    barrier.wait()
    try:
        results.append(store.begin_reply(conversation_id, user_content=text))
    except ConflictError as exc:
        results.append(exc)


def test_racing_replicas_one_wins(database_url: str) -> None:
    """Two replicas begin a reply in the same conversation at the same moment, five times."""
    stores = [ConversationStore.open(database_url, owner_id=f"replica-{n}") for n in "ab"]
    try:
        conversation_id = stores[0].create_conversation().id
        assert conversation_id is not None
        for round_number in range(5):
            barrier = threading.Barrier(2)
            results: list[ReplyStart | ConflictError] = []
            threads = [
                threading.Thread(
                    target=_begin_racing,
                    args=(store, conversation_id, f"{round_number}{n}", barrier, results),
                )
                for store, n in zip(stores, "ab", strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            winners = [r for r in results if isinstance(r, ReplyStart)]
            assert len(results) == 2 and len(winners) == 1, results
            stores[0].finish_reply(
                winners[0].placeholder,
                content="ok",
                status=MessageStatus.COMPLETE,
                stats=ReplyStats(),
            )
        messages = stores[0].get_conversation(conversation_id).messages
        assert len(messages) == 10
        assert [m.content for m in messages[1::2]] == ["ok"] * 5
    finally:
        for store in stores:
            store.close()


def _in_thread(work: object) -> tuple[threading.Thread, list[object]]:
    """Run ``work()`` in a thread; its result or exception lands in the list."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())  # type: ignore[operator]
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _wait_for_a_lock_wait(database_url: str) -> None:
    """Until a session of this database waits on a row lock (as PostgreSQL itself reports)."""
    lock_waits = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    engine = create_engine(database_url)

    def lock_waiting() -> int:
        # A transaction of its own each time: within one, PostgreSQL shows the first snapshot.
        with engine.connect() as connection:
            return int(connection.execute(lock_waits).scalar_one())

    try:
        wait_until(lock_waiting, lambda: "no session waited for the row lock")
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_send_racing_a_delete_is_not_found(postgres_database: str) -> None:
    """A delete commits while a send is between reading the conversation and writing to it.

    The delete's transaction holds the conversation's row; the send waits for it and then
    finds nothing: NotFoundError (404), not a foreign-key failure read as "database down".
    """
    store = ConversationStore.open(postgres_database)
    other = ConversationStore.open(postgres_database, owner_id="other")
    try:
        conversation_id = store.create_conversation().id
        assert conversation_id is not None
        with other._engine.connect() as connection:  # the delete, held open
            transaction = connection.begin()
            connection.execute(
                text("SELECT id FROM conversations WHERE id = :id FOR UPDATE"),
                {"id": conversation_id},
            )
            connection.execute(
                text("DELETE FROM messages WHERE conversation_id = :id"), {"id": conversation_id}
            )
            connection.execute(
                text("DELETE FROM conversations WHERE id = :id"), {"id": conversation_id}
            )
            thread, outcome = _in_thread(
                lambda: store.begin_reply(conversation_id, user_content="hello")
            )
            _wait_for_a_lock_wait(postgres_database)  # the send is now waiting for the row
            assert thread.is_alive() and not outcome
            transaction.commit()
        thread.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], NotFoundError), outcome
    finally:
        store.close()
        other.close()


@pytest.mark.postgres
def test_delete_waits_for_a_send_and_removes_its_messages(postgres_database: str) -> None:
    store = ConversationStore.open(postgres_database)
    try:
        conversation_id = store.create_conversation().id
        assert conversation_id is not None
        for _ in range(5):
            start = store.begin_reply(conversation_id, user_content="hi")
            store.finish_reply(
                start.placeholder, content="ok", status=MessageStatus.COMPLETE, stats=ReplyStats()
            )
        threads = [
            _in_thread(lambda: store.begin_reply(conversation_id, user_content="again")),
            _in_thread(lambda: store.delete_conversation(conversation_id)),
        ]
        for thread, _ in threads:
            thread.join(30)
        send, delete = (outcome[0] for _, outcome in threads)
        assert delete is None, delete
        assert isinstance(send, ReplyStart | NotFoundError), send
        with pytest.raises(NotFoundError):
            store.get_conversation(conversation_id)
    finally:
        store.close()


def test_finishing_a_reply_of_a_deleted_conversation_is_not_found(
    store: ConversationStore,
) -> None:
    conversation_id = store.create_conversation().id
    assert conversation_id is not None
    start = store.begin_reply(conversation_id, user_content="hi")
    other = ConversationStore.open(
        store._engine.url.render_as_string(hide_password=False), owner_id="other"
    )
    try:
        other.delete_conversation(conversation_id)
    finally:
        other.close()
    with pytest.raises(NotFoundError, match="not saved"):
        store.finish_reply(
            start.placeholder, content="ok", status=MessageStatus.COMPLETE, stats=ReplyStats()
        )


@pytest.mark.postgres
def test_postgresql_commits_are_durable_whatever_the_server_default(
    postgres_database: str,
) -> None:
    # The test cluster runs with synchronous_commit=off: an acknowledged commit could be lost
    # by a crash, so a reply told "complete" might not be stored. The store turns it on.
    store = ConversationStore.open(postgres_database)
    try:
        with store._engine.connect() as connection:
            assert connection.execute(text("SHOW synchronous_commit")).scalar() == "on"
    finally:
        store.close()
