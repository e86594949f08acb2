"""Reply versions: messages form a tree, and each conversation remembers its selected branch.

Existing conversations become a single branch: each message's parent is the one before it, and
the selected branch ends at the newest message. Downgrading keeps the selected branch only.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chatbot.store.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_PARENT_IS_PREVIOUS = """
UPDATE messages SET parent_id = (
    SELECT p.id FROM messages AS p
    WHERE p.conversation_id = messages.conversation_id AND p.position < messages.position
    ORDER BY p.position DESC LIMIT 1
)
"""
_SELECT_NEWEST = """
UPDATE conversations SET current_message_id = (
    SELECT m.id FROM messages AS m
    WHERE m.conversation_id = conversations.id
    ORDER BY m.position DESC LIMIT 1
)
"""


def upgrade() -> None:
    op.add_column("messages", sa.Column("parent_id", sa.String(36), nullable=True))
    op.add_column("messages", sa.Column("selected_at", UTCDateTime, nullable=True))
    op.create_index("ix_messages_parent_id", "messages", ["parent_id"])
    op.add_column("conversations", sa.Column("current_message_id", sa.String(36), nullable=True))
    op.execute(_PARENT_IS_PREVIOUS)
    op.execute(_SELECT_NEWEST)


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, conversation_id, parent_id FROM messages")).all()
    parents = {r.id: r.parent_id for r in rows}
    kept: set[str] = set()
    for (current,) in bind.execute(sa.text("SELECT current_message_id FROM conversations")):
        while current is not None and current not in kept:
            kept.add(current)
            current = parents.get(current)
    for message_id in set(parents) - kept:
        bind.execute(sa.text("DELETE FROM messages WHERE id = :id"), {"id": message_id})
    op.drop_column("conversations", "current_message_id")
    op.drop_index("ix_messages_parent_id", table_name="messages")
    op.drop_column("messages", "selected_at")
    op.drop_column("messages", "parent_id")
