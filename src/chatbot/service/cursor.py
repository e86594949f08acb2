"""Cursors of the conversation list: a place in its ``(updated_at, id)`` order.

A cursor is ``<microseconds since 1970 UTC>.<id>`` of the last row a page showed. Clients
pass it back as ``after`` without reading it. Every string of that shape (:data:`PATTERN`,
which the OpenAPI document states) is a place in the order, whether or not such a row
exists, so any cursor the schema allows is answered with a page; anything else is a 400.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from chatbot.domain import ConversationSummary
from chatbot.errors import InvalidRequestError
from chatbot.store import ListPosition

PATTERN = r"^[0-9]{1,17}\.[0-9A-Za-z_-]{1,36}$"
MAX_CURSOR_CHARS = 54
_SHAPE = re.compile(PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode(row: ConversationSummary) -> str:
    micros = (row.updated_at.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{row.id}"


def decode(cursor: str, param: str = "after") -> ListPosition:
    """The place a cursor stands for; InvalidRequestError for anything not of its shape."""
    if not _SHAPE.fullmatch(cursor):
        raise InvalidRequestError(
            f"{param} is not a cursor of this list; pass next_cursor of the previous page as it is",
            param=param,
            code="invalid_cursor",
        )
    micros, _, conversation_id = cursor.partition(".")
    return _EPOCH + timedelta(microseconds=int(micros)), conversation_id
