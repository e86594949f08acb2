"""Reply versions: the messages of a conversation as a tree, and the branch on screen.

Every message names its parent (None for a first message). Regenerate adds a sibling to a reply
and Edit a sibling to a user message, so earlier versions stay. The conversation remembers the
last message of the selected branch; what the model, the UI and the exports see is the path
from the root to it. Plain functions over rows already loaded, so the rules are the same for
SQLite and PostgreSQL and are tested without a database.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from chatbot.store.models import MessageRow


class MessageTree:
    """The rows of one conversation, indexed by id and by parent, oldest first."""

    def __init__(self, rows: Iterable[MessageRow]) -> None:
        self.rows = sorted(rows, key=lambda r: r.position)
        self.by_id = {r.id: r for r in self.rows}
        self._children: dict[str | None, list[MessageRow]] = {}
        for row in self.rows:
            self._children.setdefault(row.parent_id, []).append(row)

    def children(self, parent_id: str | None) -> list[MessageRow]:
        return self._children.get(parent_id, [])

    def sibling_ids(self, row: MessageRow) -> tuple[str, ...]:
        """Every version at this place, oldest first, this one included."""
        return tuple(r.id for r in self.children(row.parent_id))

    def leaf(self, current_id: str | None) -> MessageRow | None:
        """The selected branch's last message; the newest message when none is recorded."""
        if current_id is not None and current_id in self.by_id:
            return self.by_id[current_id]
        return self.rows[-1] if self.rows else None

    def path(self, leaf_id: str | None) -> list[MessageRow]:
        """Root to ``leaf_id`` (itself included); empty for None."""
        out: list[MessageRow] = []
        seen: set[str] = set()
        row = self.by_id.get(leaf_id) if leaf_id is not None else None
        while row is not None and row.id not in seen:  # a cycle cannot be stored; stay safe
            seen.add(row.id)
            out.append(row)
            row = self.by_id.get(row.parent_id) if row.parent_id is not None else None
        out.reverse()
        return out

    def selected_path(self, current_id: str | None) -> list[MessageRow]:
        leaf = self.leaf(current_id)
        return self.path(leaf.id if leaf is not None else None)

    def last_seen_leaf_under(self, row: MessageRow) -> MessageRow:
        """The branch a version switch shows: down through the child last on screen.

        Rows stamped ``selected_at`` win over rows never stamped (migrated ones); the newest
        breaks ties.
        """
        while children := self.children(row.id):
            row = max(children, key=_last_seen)
        return row

    def next_position(self) -> int:
        return self.rows[-1].position + 1 if self.rows else 0


_NEVER = datetime.min.replace(tzinfo=UTC)


def _last_seen(row: MessageRow) -> tuple[datetime, int]:
    return (row.selected_at or _NEVER, row.position)
