"""Alembic environment: runs on the connection that :mod:`chatbot.store.migrate` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from chatbot.store.models import Base

# Any constant works; replicas starting together take turns on it instead of racing.
_PG_MIGRATION_LOCK = 7_417_112_001


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("chatbot migrations run through chatbot.store.migrate, not the alembic CLI")
_run(_connection)
