"""Opening a database: SQLite tuned for one writer at a time, PostgreSQL through psycopg."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry

from chatbot.errors import ConfigurationError

SQLITE_BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 5
# Execution option read by the "begin" hook: how a SQLite transaction starts.
SQLITE_BEGIN = "sqlite_begin"


def open_engine(url: str) -> Engine:
    """An engine for ``url`` with the settings this store relies on."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"CHATBOT_DATABASE_URL: not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", "psycopg2"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return _postgres_engine(parsed)
    raise ConfigurationError(
        f"CHATBOT_DATABASE_URL: unsupported database {backend!r}; use sqlite:/// or "
        "postgresql+psycopg://"
    )


def _postgres_engine(url: URL) -> Engine:
    engine = create_engine(
        url,
        pool_pre_ping=True,
        hide_parameters=True,  # message text never reaches logs through SQL errors
        pool_size=10,
        max_overflow=20,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # A reply is answered ``complete`` only once it is stored: a commit must be durable
        # when it returns, even on a server configured with synchronous_commit=off (there,
        # a crash right after the commit would lose it while the client was told it is kept).
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET synchronous_commit TO on")
        finally:
            cursor.close()
        dbapi_connection.commit()

    return engine


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        hide_parameters=True,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Writers take the write lock up front (BEGIN IMMEDIATE): a deferred transaction that
        # reads and then writes can fail at once with "database is locked" in WAL mode, while an
        # immediate one waits its turn for up to the busy timeout.
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine


def writer(engine: Engine) -> Engine:
    """The same pool, but transactions that take SQLite's write lock when they begin."""
    return engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
