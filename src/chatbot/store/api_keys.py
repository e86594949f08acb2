"""The ``api_keys`` table: create, list, revoke, and the per-request lookup of a key.

The lookup reads the database on every request, so a revoked key is refused at once, on every
replica. ``last_used_at`` is written at most once a minute per key, so a busy client does not
turn every request into a write (SQLite has one writer at a time).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from chatbot.domain.api_keys import display_prefix, key_digest, new_api_key
from chatbot.domain.messages import utc_now
from chatbot.domain.users import User
from chatbot.errors import InvalidRequestError, NotFoundError, UnavailableError
from chatbot.store import migrate
from chatbot.store.database import open_engine, writer
from chatbot.store.models import ApiKeyRow

logger = logging.getLogger(__name__)

LAST_USED_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What a listing shows of a key: never the key, never its digest."""

    id: str
    prefix: str
    user: User
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyStore:
    """Per-user API keys on the conversations' database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True) -> ApiKeyStore:
        """Connect; apply the migrations first unless the caller knows they ran (the backend)."""
        engine = open_engine(url)
        store = cls(engine)
        if migrate_schema:
            try:
                with _database_errors("migrate"):
                    migrate.upgrade(store._writer)
            except BaseException:
                engine.dispose()
                raise
        return store

    def close(self) -> None:
        self._engine.dispose()

    def create(self, user: User) -> tuple[str, ApiKeyInfo]:
        """A new key for ``user``: the key itself (to show once) and what is stored of it."""
        key = new_api_key()
        row = ApiKeyRow(
            id=uuid.uuid4().hex,
            user_id=user.id,
            user_name=user.name,
            key_hash=key_digest(key),
            prefix=display_prefix(key),
            created_at=utc_now(),
        )
        with self._session(write=True) as session:
            session.add(row)
            session.flush()
            info = _info(row)
        return key, info

    def list_keys(self) -> list[ApiKeyInfo]:
        with self._session() as session:
            rows = session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id))
            return [_info(row) for row in rows]

    def revoke(self, id_or_prefix: str) -> ApiKeyInfo:
        """Revoke the key with this id or display prefix (``cb-xxxxxxxx``); idempotent."""
        if not id_or_prefix:
            raise InvalidRequestError("name the key to revoke by its id or its prefix")
        with self._session(write=True) as session:
            rows = list(
                session.scalars(
                    select(ApiKeyRow).where(
                        or_(ApiKeyRow.id == id_or_prefix, ApiKeyRow.prefix == id_or_prefix)
                    )
                )
            )
            if not rows:
                raise NotFoundError(
                    f"no API key has the id or prefix {id_or_prefix!r}; see 'chatbot keys list'"
                )
            if len(rows) > 1:
                raise InvalidRequestError(
                    f"{len(rows)} keys share the prefix {id_or_prefix!r}; revoke by id instead"
                )
            row = rows[0]
            if row.revoked_at is None:
                row.revoked_at = utc_now()
            return _info(row)

    def user_for(self, key: str) -> User | None:
        """The user of a valid (known, not revoked) key; None otherwise."""
        digest = key_digest(key)
        with self._session() as session:
            row = session.scalars(
                select(ApiKeyRow).where(
                    ApiKeyRow.key_hash == digest, ApiKeyRow.revoked_at.is_(None)
                )
            ).one_or_none()
            if row is None:
                return None
            user = User(id=row.user_id, name=row.user_name)
            stale = row.last_used_at is None or utc_now() - row.last_used_at > LAST_USED_EVERY
            key_id = row.id
        if stale:
            self._touch(key_id)
        return user

    def _touch(self, key_id: str) -> None:
        now = utc_now()
        try:
            with self._session(write=True) as session:
                session.execute(
                    update(ApiKeyRow)
                    .where(
                        ApiKeyRow.id == key_id,
                        or_(
                            ApiKeyRow.last_used_at.is_(None),
                            ApiKeyRow.last_used_at < now - LAST_USED_EVERY,
                        ),
                    )
                    .values(last_used_at=now)
                )
        except UnavailableError:
            # Only bookkeeping: the key was valid, the request goes on.
            logger.warning("could not record the use of API key %s", key_id)

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
    except SQLAlchemyError as exc:
        # Parameters are hidden by the engine (hide_parameters): no digest reaches the log.
        logger.warning("API key store: database %s failed: %s", what, type(exc).__name__)
        raise UnavailableError(
            f"the database is unavailable ({type(exc).__name__}); try again shortly",
            code="database_unavailable",
        ) from exc


def _info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        prefix=row.prefix,
        user=User(id=row.user_id, name=row.user_name),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )
