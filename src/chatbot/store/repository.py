"""ConversationStore: every read and write of conversations and messages, and nothing else.

Messages form a tree (:mod:`chatbot.store.tree`): Regenerate and Edit add versions instead of
replacing, and a conversation read from here holds its selected branch only.

Every conversation has an owner (a user id). A store is bound to one user (the local user
unless :meth:`ConversationStore.for_user` says otherwise) and every read and write that names a
conversation carries ``owner_id = <that user>`` in its SQL, so another user's conversation is
exactly a missing one: the same NotFoundError, with no way to tell the two apart.

It speaks domain objects (:mod:`chatbot.domain`) in and out, and raises only
:mod:`chatbot.errors` exceptions: a database that is down or failing becomes
:class:`~chatbot.errors.UnavailableError`, never a raw SQLAlchemy error.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import Engine, and_, delete, func, or_, select, text, update
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from chatbot.domain import (
    Conversation,
    ConversationSummary,
    GenerationParams,
    Message,
    MessageStatus,
    ReplyStats,
    Role,
)
from chatbot.domain.messages import utc_now
from chatbot.domain.users import LOCAL_USER
from chatbot.errors import (
    ChatbotError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    UnavailableError,
)
from chatbot.store import migrate
from chatbot.store.database import open_engine, writer
from chatbot.store.liveness import current_owner_id, owner_is_gone
from chatbot.store.models import MAX_TITLE_CHARS, STREAMING, ConversationRow, MessageRow
from chatbot.store.tree import MessageTree

logger = logging.getLogger(__name__)

DEFAULT_TITLE = "New conversation"
AUTO_TITLE_CHARS = 60
# A streaming row whose writer has not written for this long is presumed dead.
DEFAULT_STALE_AFTER_S = 10.0


@dataclass(frozen=True)
class ReplyStart:
    """What :meth:`ConversationStore.begin_reply` committed, and the prompt to answer."""

    conversation: Conversation  # the branch up to the new reply, for the model
    user_message: Message | None  # the new or edited user message; None for regenerate
    placeholder: Message  # the assistant row in ``streaming`` state


def derive_title(content: str) -> str:
    """The first non-empty line, whitespace collapsed, cut at a word to about 60 characters."""
    line = next((ln for ln in content.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if not line:
        return DEFAULT_TITLE
    if len(line) <= AUTO_TITLE_CHARS:
        return line
    cut = line[: AUTO_TITLE_CHARS - 1]
    if " " in cut[AUTO_TITLE_CHARS // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + "…"


# A place in the conversation list: the (updated_at, id) of the last row a page showed.
ListPosition = tuple[datetime, str]


def new_id() -> str:
    return uuid.uuid4().hex


class ConversationStore:
    """Conversations and their messages on SQLite or PostgreSQL, one row per message.

    ``owner_id`` names this process as the writer of the replies it streams (liveness, see
    :mod:`chatbot.store.liveness`); ``user_id`` is the user whose conversations it reads and
    writes.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        owner_id: str | None = None,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        user_id: str = LOCAL_USER.id,
    ) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self.owner_id = owner_id or current_owner_id()
        self.stale_after = timedelta(seconds=stale_after_s)
        self.user_id = user_id

    def for_user(self, user_id: str) -> ConversationStore:
        """The same database (engine, pool, process identity), scoped to ``user_id``."""
        view = copy.copy(self)
        view.user_id = user_id
        return view

    @classmethod
    def open(
        cls,
        url: str,
        *,
        owner_id: str | None = None,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
    ) -> ConversationStore:
        """Connect, apply migrations, and mark replies that died with their process."""
        engine = open_engine(url)
        store = cls(engine, owner_id=owner_id, stale_after_s=stale_after_s)
        try:
            with _database_errors("migrate"):
                migrate.upgrade(store._writer)
            store.recover_interrupted()
        except BaseException:
            engine.dispose()
            raise
        return store

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    def check(self) -> None:
        """Raise UnavailableError unless the database answers (for readiness probes)."""
        with self._session() as session:
            session.execute(text("SELECT 1"))

    # -- conversations -----------------------------------------------------------------
    def create_conversation(
        self,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
    ) -> Conversation:
        now = utc_now()
        row = ConversationRow(
            id=new_id(),
            title=title or DEFAULT_TITLE,
            title_custom=title is not None,
            system_prompt=system_prompt or None,
            params=(params or GenerationParams()).model_dump(mode="json"),
            created_at=now,
            updated_at=now,
            owner_id=self.user_id,
        )
        with self._session(write=True) as session:
            session.add(row)
        return _conversation(row, MessageTree([]))

    def list_conversations(
        self, *, limit: int = 50, offset: int = 0, before: ListPosition | None = None
    ) -> list[ConversationSummary]:
        """This user's conversations, newest activity first, by ``(updated_at, id)``.

        ``before`` is a keyset cursor: only rows after that one in this order. Unlike
        ``offset``, a page read that way neither repeats nor skips a row when conversations
        are added meanwhile (they sort before the cursor).
        """
        # The page is chosen first and messages are counted for its rows only: PostgreSQL would
        # otherwise evaluate the count for every row that OFFSET skips.
        newest_first = (ConversationRow.updated_at.desc(), ConversationRow.id.desc())
        chosen = select(
            ConversationRow.id,
            ConversationRow.title,
            ConversationRow.created_at,
            ConversationRow.updated_at,
        ).where(ConversationRow.owner_id == self.user_id)
        if before is not None:
            at, last_id = before
            chosen = chosen.where(
                or_(
                    ConversationRow.updated_at < at,
                    and_(ConversationRow.updated_at == at, ConversationRow.id < last_id),
                )
            )
        page = chosen.order_by(*newest_first).limit(limit).offset(offset).subquery("page")
        count = (
            select(func.count())
            .where(MessageRow.conversation_id == page.c.id)
            .correlate(page)
            .scalar_subquery()
        )
        statement = select(
            page.c.id, page.c.title, page.c.created_at, page.c.updated_at, count
        ).order_by(page.c.updated_at.desc(), page.c.id.desc())
        with self._session() as session:
            rows = session.execute(statement).all()
        return [
            ConversationSummary(
                id=r[0], title=r[1], created_at=r[2], updated_at=r[3], message_count=r[4]
            )
            for r in rows
        ]

    def get_conversation(self, conversation_id: str) -> Conversation:
        """The selected branch, each message with its versions."""
        with self._session() as session:
            row = self._get(session, conversation_id)
            return _conversation(row, _tree(session, conversation_id))

    def all_messages(self, conversation_id: str) -> list[Message]:
        """Every message of every branch, oldest first (the whole tree, read-only)."""
        with self._session() as session:
            self._get(session, conversation_id)
            tree = _tree(session, conversation_id)
            return [_message(r, tree) for r in tree.rows]

    def select_message(self, conversation_id: str, message_id: str) -> Conversation:
        """Show the branch through ``message_id`` (a version), down the way last seen there.

        A message already on the selected branch changes nothing. ConflictError while a reply
        is being written here (on any replica): the branch it extends must stay on screen.
        """
        with self._session(write=True) as session:
            row = self._get(session, conversation_id)
            self._ensure_idle(session, conversation_id)
            tree = _tree(session, conversation_id)
            target = tree.by_id.get(message_id)
            if target is None:
                raise NotFoundError(
                    f"no message with id {message_id!r} in this conversation", param="message_id"
                )
            if target not in tree.selected_path(row.current_message_id):
                branch = tree.path(tree.last_seen_leaf_under(target).id)
                row.current_message_id = branch[-1].id
                now = utc_now()
                for message in branch:
                    message.selected_at = now
                if not row.title_custom:
                    row.title = _auto_title(branch)
            return _conversation(row, tree)

    def update_conversation(
        self,
        conversation_id: str,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
    ) -> Conversation:
        """None leaves a field as it is; an empty system prompt clears it."""
        with self._session(write=True) as session:
            row = self._get(session, conversation_id, lock=True)
            if title is not None:
                row.title, row.title_custom = title, True
            if system_prompt is not None:
                row.system_prompt = system_prompt or None
            if params is not None:
                row.params = params.model_dump(mode="json")
            session.flush()
            return _conversation(row, _tree(session, conversation_id))

    def delete_conversation(self, conversation_id: str) -> None:
        with self._session(write=True) as session:
            row = self._get(session, conversation_id, lock=True)
            session.execute(delete(MessageRow).where(MessageRow.conversation_id == row.id))
            session.delete(row)

    def clear_conversation(self, conversation_id: str) -> Conversation:
        with self._session(write=True) as session:
            row = self._get(session, conversation_id, lock=True)
            session.execute(delete(MessageRow).where(MessageRow.conversation_id == row.id))
            if not row.title_custom:
                row.title = DEFAULT_TITLE
            row.current_message_id = None
            row.updated_at = utc_now()
            return _conversation(row, MessageTree([]))

    def import_conversation(self, conversation: Conversation) -> Conversation:
        """Store a parsed file as a new conversation; a reply cannot arrive ``streaming``."""
        now = utc_now()
        first_user = next((m for m in conversation.messages if m.role is Role.USER), None)
        custom = conversation.title != DEFAULT_TITLE
        title = (
            conversation.title if custom else derive_title(first_user.content if first_user else "")
        )
        row = ConversationRow(
            id=new_id(),
            title=title[:MAX_TITLE_CHARS],
            title_custom=custom,
            system_prompt=conversation.system_prompt or None,
            params=conversation.params.model_dump(mode="json"),
            created_at=now,
            updated_at=now,
            owner_id=self.user_id,  # the importer's, whatever the file says
        )
        messages = [
            MessageRow(
                id=new_id(),
                conversation_id=row.id,
                position=position,
                role=m.role.value,
                content=m.content,
                status=(
                    MessageStatus.INTERRUPTED if m.status is MessageStatus.STREAMING else m.status
                ).value,
                created_at=now,
                stats=m.stats.model_dump(mode="json") if m.stats else None,
            )
            for position, m in enumerate(conversation.messages)
        ]
        for parent, child in pairwise(messages):  # one branch
            child.parent_id = parent.id
        row.current_message_id = messages[-1].id if messages else None
        with self._session(write=True) as session:
            session.add(row)
            session.flush()
            session.add_all(messages)
        return _conversation(row, MessageTree(messages))

    # -- replies -----------------------------------------------------------------------
    def begin_reply(
        self,
        conversation_id: str,
        *,
        user_content: str | None = None,
        edit_message_id: str | None = None,
        regenerate: bool = False,
    ) -> ReplyStart:
        """Commit the user message (new or edited) and a ``streaming`` assistant placeholder.

        One transaction: either both are stored or neither. Nothing is deleted: editing a user
        message adds a new version of it (a sibling) that starts a new branch, regenerating adds
        a new version of the last reply, and the new branch becomes the selected one.
        ConflictError while another live reply is streaming in this conversation, on any
        replica.
        """
        with self._session(write=True) as session:
            row = self._get(session, conversation_id, lock=True)
            self._ensure_idle(session, conversation_id)
            now = utc_now()
            tree = _tree(session, conversation_id)
            position = tree.next_position()
            branch = tree.selected_path(row.current_message_id)
            user_row: MessageRow | None = None
            if edit_message_id is not None:
                assert user_content is not None
                edited = _user_message_row(tree, edit_message_id)
                branch = tree.path(edited.parent_id)
                user_row = _new_message(row.id, position, Role.USER, user_content, now)
                user_row.parent_id = edited.parent_id
            elif regenerate:
                if branch and branch[-1].role == Role.ASSISTANT.value:
                    branch.pop()
                if not branch or branch[-1].role != Role.USER.value:
                    # The request is fine; the conversation's state is not (409, not 400).
                    raise ConflictError(
                        "there is no user message to answer again; send a message first",
                        param="conversation_id",
                        code="nothing_to_regenerate",
                    )
            else:
                assert user_content is not None
                user_row = _new_message(row.id, position, Role.USER, user_content, now)
                user_row.parent_id = branch[-1].id if branch else None
            if user_row is not None:
                position += 1
                session.add(user_row)
                branch.append(user_row)
            placeholder = _new_message(row.id, position, Role.ASSISTANT, "", now)
            placeholder.parent_id = branch[-1].id
            placeholder.status = STREAMING
            placeholder.owner_id = self.owner_id
            placeholder.heartbeat_at = now
            session.add(placeholder)
            row.current_message_id = placeholder.id
            if not row.title_custom:
                row.title = _auto_title(branch)
            row.updated_at = now
            try:
                session.flush()
            except IntegrityError as exc:
                if _is_foreign_key_violation(exc):
                    raise _deleted(conversation_id) from None
                raise ConflictError(
                    "another reply is already being written in this conversation",
                    param="conversation_id",
                    code="reply_in_progress",
                ) from None
            added = [placeholder] if user_row is None else [user_row, placeholder]
            tree = MessageTree([*tree.rows, *added])
            return ReplyStart(
                conversation=_conversation(row, tree, branch),
                user_message=_message(user_row, tree) if user_row is not None else None,
                placeholder=_message(placeholder, tree),
            )

    def save_progress(self, progress: Mapping[str, str]) -> set[str]:
        """Persist the partial text of replies in progress and refresh their heartbeats.

        Returns the ids of those that another replica asked to stop.
        """
        if not progress:
            return set()
        now = utc_now()
        with self._session(write=True) as session:
            for message_id, content in progress.items():
                session.execute(
                    update(MessageRow)
                    .where(MessageRow.id == message_id, MessageRow.status == STREAMING)
                    .values(content=content, heartbeat_at=now)
                )
            flagged = session.scalars(
                select(MessageRow.id).where(
                    MessageRow.id.in_(list(progress)), MessageRow.stop_requested.is_(True)
                )
            )
            return set(flagged)

    def finish_reply(
        self, placeholder: Message, *, content: str, status: MessageStatus, stats: ReplyStats
    ) -> Message:
        """Store the end of a reply; the final text wins over any interim state."""
        assert placeholder.id is not None
        now = utc_now()
        with self._session(write=True) as session:
            # Lock order as everywhere: the conversation, then its messages (no deadlock with
            # a delete that runs at the same time).
            found = session.get(MessageRow, placeholder.id)
            if found is not None:
                session.get(ConversationRow, found.conversation_id, with_for_update=True)
            row = session.get(
                MessageRow, placeholder.id, with_for_update=True, populate_existing=True
            )
            if row is None:  # the conversation was deleted meanwhile (by another replica)
                raise NotFoundError(
                    "the conversation was deleted while the reply was written; the reply was "
                    "not saved",
                    param="conversation_id",
                )
            row.content, row.status = content, status.value
            row.stats = stats.model_dump(mode="json")
            row.owner_id, row.heartbeat_at, row.stop_requested = None, None, False
            session.execute(
                update(ConversationRow)
                .where(ConversationRow.id == row.conversation_id)
                .values(updated_at=now)
            )
            session.flush()
            return _message(row, _siblings(session, row))

    def live_reply(self, conversation_id: str) -> Message | None:
        """The reply streaming in this conversation, if its writer is alive.

        A streaming row whose writer is gone is marked ``interrupted`` here.
        """
        with self._session() as session:
            self._get(session, conversation_id)
            row = session.scalars(self._streaming_in(conversation_id)).first()
            if row is None:
                return None
            if self._is_live(row):
                return _message(row, _siblings(session, row))
        self._interrupt_dead(conversation_id)
        return None

    def reply_message(self, message_id: str) -> Message | None:
        """A message of this user's as stored now (None once deleted, or not theirs).

        Dead streaming rows become interrupted.
        """
        with self._session() as session:
            row = session.scalars(
                select(MessageRow)
                .join(ConversationRow, ConversationRow.id == MessageRow.conversation_id)
                .where(MessageRow.id == message_id, ConversationRow.owner_id == self.user_id)
            ).first()
            if row is None:
                return None
            if row.status != STREAMING or self._is_live(row):
                return _message(row, _siblings(session, row))
            conversation_id = row.conversation_id
        self._interrupt_dead(conversation_id)
        return self.reply_message(message_id)

    def request_stop(self, conversation_id: str) -> bool:
        """Ask the replica that writes the live reply here to stop it; False when none runs."""
        with self._session(write=True) as session:
            self._get(session, conversation_id, lock=True)
            row = session.scalars(self._streaming_in(conversation_id)).first()
            if row is None:
                return False
            if not self._is_live(row):
                _interrupt(row)
                return False
            row.stop_requested = True
            return True

    def recover_interrupted(self) -> int:
        """Mark ``interrupted`` every streaming reply whose writer is gone; count them.

        Run on open: after ``kill -9`` the partial text saved so far stays. A reply that a live
        replica is writing (fresh heartbeat, owner alive) is left alone.
        """
        with self._session(write=True) as session:
            rows = session.scalars(select(MessageRow).where(MessageRow.status == STREAMING))
            dead = [r for r in rows if not self._is_live(r)]
            for row in dead:
                _interrupt(row)
        if dead:
            logger.warning("marked %d replies interrupted (their process ended)", len(dead))
        return len(dead)

    # -- internals ---------------------------------------------------------------------
    def _get(
        self, session: Session, conversation_id: str, *, lock: bool = False
    ) -> ConversationRow:
        """This user's conversation; ``lock`` holds its row (``FOR UPDATE``) until the end.

        Every write that adds, changes or deletes a conversation's messages locks its row first,
        so on PostgreSQL a delete and a send that start together run one after the other: the
        send that comes second finds no conversation (404) instead of failing on a foreign key
        or a vanished row. SQLite's writers are serialised anyway (``BEGIN IMMEDIATE``).
        Another user's conversation is not found, with the same error as a missing one.
        """
        statement = select(ConversationRow).where(
            ConversationRow.id == conversation_id, ConversationRow.owner_id == self.user_id
        )
        if lock:
            statement = statement.with_for_update()
        row = session.scalars(statement).first()
        if row is None:
            raise NotFoundError(
                f"no conversation with id {conversation_id!r}", param="conversation_id"
            )
        return row

    def _streaming_in(self, conversation_id: str) -> Any:
        """The reply streaming in this user's conversation (none in another user's)."""
        return (
            select(MessageRow)
            .join(ConversationRow, ConversationRow.id == MessageRow.conversation_id)
            .where(
                MessageRow.conversation_id == conversation_id,
                MessageRow.status == STREAMING,
                ConversationRow.owner_id == self.user_id,
            )
        )

    def _ensure_idle(self, session: Session, conversation_id: str) -> None:
        row = session.scalars(self._streaming_in(conversation_id)).first()
        if row is None:
            return
        if self._is_live(row):
            raise ConflictError(
                "a reply is already being written in this conversation; wait or stop it",
                param="conversation_id",
                code="reply_in_progress",
            )
        _interrupt(row)
        session.flush()

    def _interrupt_dead(self, conversation_id: str) -> None:
        with self._session(write=True) as session:
            row = session.scalars(self._streaming_in(conversation_id)).first()
            if row is not None and not self._is_live(row):
                _interrupt(row)

    def _is_live(self, row: MessageRow) -> bool:
        if row.heartbeat_at is None or utc_now() - row.heartbeat_at > self.stale_after:
            return False
        return not owner_is_gone(row.owner_id, self.owner_id)

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        bind = self._writer if write else self._engine
        with (
            _database_errors("write" if write else "read"),
            Session(bind, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session


@contextmanager
def _database_errors(what: str) -> Iterator[None]:
    try:
        yield
    except ChatbotError:
        raise
    except StaleDataError:
        # A row changed by this transaction was deleted by another one meanwhile.
        raise NotFoundError(
            "the conversation was deleted while this request ran", param="conversation_id"
        ) from None
    except IntegrityError as exc:
        if not _is_foreign_key_violation(exc):
            raise _unavailable(what, exc) from exc
        raise NotFoundError(
            "the conversation was deleted while this request ran", param="conversation_id"
        ) from None
    except DataError as exc:
        # The request's own data (e.g. a NUL in text on PostgreSQL): retrying cannot help.
        logger.warning("database %s refused a value: %s", what, type(exc.orig).__name__)
        raise InvalidRequestError(
            "the database cannot store a value of this request (it refused it as invalid "
            "data, e.g. a NUL character \\u0000 in text); remove it and send again",
            code="invalid_data",
        ) from exc
    except SQLAlchemyError as exc:
        raise _unavailable(what, exc) from exc


def _unavailable(what: str, exc: SQLAlchemyError) -> UnavailableError:
    logger.warning("database %s failed: %s", what, exc)
    return UnavailableError(
        f"the database is unavailable ({type(exc).__name__}); try again shortly",
        code="database_unavailable",
    )


def _is_foreign_key_violation(exc: IntegrityError) -> bool:
    """PostgreSQL's SQLSTATE 23503: a row refers to a conversation that is gone."""
    return getattr(exc.orig, "sqlstate", None) == "23503"


def _deleted(conversation_id: str) -> NotFoundError:
    return NotFoundError(
        f"no conversation with id {conversation_id!r} (it was deleted while this request ran)",
        param="conversation_id",
    )


def _tree(session: Session, conversation_id: str) -> MessageTree:
    return MessageTree(
        session.scalars(select(MessageRow).where(MessageRow.conversation_id == conversation_id))
    )


def _siblings(session: Session, row: MessageRow) -> tuple[str, ...]:
    """The ids of every version of ``row`` (itself included), oldest first."""
    same_parent = (
        MessageRow.parent_id.is_(None)
        if row.parent_id is None
        else MessageRow.parent_id == row.parent_id
    )
    return tuple(
        session.scalars(
            select(MessageRow.id)
            .where(MessageRow.conversation_id == row.conversation_id, same_parent)
            .order_by(MessageRow.position)
        )
    )


def _user_message_row(tree: MessageTree, message_id: str) -> MessageRow:
    target = tree.by_id.get(message_id)
    if target is None:
        raise NotFoundError(
            f"no message with id {message_id!r} in this conversation", param="message_id"
        )
    if target.role != Role.USER.value:
        raise InvalidRequestError("only user messages can be edited", param="message_id")
    return target


def _auto_title(branch: list[MessageRow]) -> str:
    """The automatic title follows the first user message of the branch on screen."""
    first_user = next((r for r in branch if r.role == Role.USER.value), None)
    return derive_title(first_user.content if first_user else "")


def _new_message(
    conversation_id: str, position: int, role: Role, content: str, now: datetime
) -> MessageRow:
    return MessageRow(
        id=new_id(),
        conversation_id=conversation_id,
        position=position,
        role=role.value,
        content=content,
        status=MessageStatus.COMPLETE.value,
        created_at=now,
        selected_at=now,  # a new message is on the branch on screen
        stop_requested=False,
    )


def _interrupt(row: MessageRow) -> None:
    row.status = MessageStatus.INTERRUPTED.value
    row.owner_id, row.heartbeat_at, row.stop_requested = None, None, False


def _message(row: MessageRow, versions: MessageTree | tuple[str, ...] = ()) -> Message:
    sibling_ids = versions.sibling_ids(row) if isinstance(versions, MessageTree) else versions
    return Message(
        id=row.id,
        role=Role(row.role),
        content=row.content,
        status=MessageStatus(row.status),
        created_at=row.created_at,
        stats=ReplyStats.model_validate(row.stats) if row.stats else None,
        parent_id=row.parent_id,
        sibling_ids=sibling_ids,
    )


def _conversation(
    row: ConversationRow, tree: MessageTree, branch: list[MessageRow] | None = None
) -> Conversation:
    """The conversation with ``branch`` (default: the selected one) as its messages."""
    if branch is None:
        branch = tree.selected_path(row.current_message_id)
    return Conversation(
        id=row.id,
        title=row.title,
        system_prompt=row.system_prompt,
        params=GenerationParams.model_validate(row.params),
        messages=tuple(_message(m, tree) for m in branch),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
