"""Owners: every conversation belongs to a user; existing ones to the local user.

The column's server default is the local user's id, so existing rows get it in the same
statement and a replica still on older code (which does not name an owner) writes rows the
local user owns. The list index leads with the owner: every list is one owner's.
Downgrading drops the owners (every conversation is everyone's again).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen here (not imported): a migration must keep doing what it did when it was written.
_LOCAL_USER_ID = "local"
_USER_ID_CHARS = 512


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column(
            "owner_id",
            sa.String(_USER_ID_CHARS),
            nullable=False,
            server_default=sa.text(f"'{_LOCAL_USER_ID}'"),
        ),
    )
    op.create_index(
        "ix_conversations_owner_updated_at_id", "conversations", ["owner_id", "updated_at", "id"]
    )
    op.drop_index("ix_conversations_updated_at_id", table_name="conversations")


def downgrade() -> None:
    op.create_index("ix_conversations_updated_at_id", "conversations", ["updated_at", "id"])
    op.drop_index("ix_conversations_owner_updated_at_id", table_name="conversations")
    op.drop_column("conversations", "owner_id")
