"""The schema: one row per conversation (with its owner), one row per message; messages form a tree.

Migrations in ``migrations/versions`` create exactly this; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from chatbot.domain.users import LOCAL_USER, USER_ID_MAX_CHARS

MAX_TITLE_CHARS = 200
ID_CHARS = 36
STREAMING = "streaming"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class ConversationRow(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(ID_CHARS), primary_key=True)
    title: Mapped[str] = mapped_column(String(MAX_TITLE_CHARS))
    # False while the title is the automatic one taken from the first user message.
    title_custom: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The last message of the branch on screen (see chatbot.store.tree). No foreign key: the
    # two tables would point at each other, and the store is the one writer of both.
    current_message_id: Mapped[str | None] = mapped_column(String(ID_CHARS))
    # The user it belongs to (chatbot.domain.users). The server default is the local user: rows
    # from before ownership, or written by a replica still on older code, stay the local user's.
    owner_id: Mapped[str] = mapped_column(
        String(USER_ID_MAX_CHARS), server_default=text(f"'{LOCAL_USER.id}'")
    )

    # The list page: one owner's conversations, newest activity first, id breaks ties so pages
    # are stable.
    __table_args__ = (
        Index("ix_conversations_owner_updated_at_id", "owner_id", "updated_at", "id"),
    )


class MessageRow(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(ID_CHARS), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(
        String(ID_CHARS), ForeignKey("conversations.id", ondelete="CASCADE")
    )
    # Creation order in the conversation (every branch); a parent always comes first.
    position: Mapped[int] = mapped_column(Integer)
    # The message this one answers or follows; None for a first message. Siblings (same
    # parent) are versions of one another: a regenerated reply, an edited user message.
    parent_id: Mapped[str | None] = mapped_column(String(ID_CHARS))
    # When this message was last put on the branch on screen (created or selected): switching
    # to a version goes back down the branch that was last seen below it.
    selected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Only while streaming: which process writes this reply, when it last said it is alive,
    # and whether another replica asked it to stop.
    owner_id: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stop_requested: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))

    __table_args__ = (
        # Loading a conversation in order, and counting its messages.
        UniqueConstraint("conversation_id", "position", name="uq_messages_conversation_position"),
        # The versions of a message: its siblings, found by their parent.
        Index("ix_messages_parent_id", "parent_id"),
        # At most one reply in progress per conversation, on every replica: the database
        # itself turns a racing second reply into a conflict.
        Index(
            "ux_messages_one_streaming",
            "conversation_id",
            unique=True,
            sqlite_where=text("status = 'streaming'"),
            postgresql_where=text("status = 'streaming'"),
        ),
    )


class ApiKeyRow(Base):
    """A per-user API key: only its SHA-256 digest is kept (see chatbot.domain.api_keys)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(ID_CHARS), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(512))
    user_name: Mapped[str] = mapped_column(String(512))
    key_hash: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Every authenticated request finds its key by the digest.
        UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        Index("ix_api_keys_user_id", "user_id"),
    )
