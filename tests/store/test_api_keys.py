"""The ``api_keys`` table on SQLite and PostgreSQL: only digests kept, revocation seen at once
by every store on the database (each replica has its own)."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from chatbot.domain.users import User
from chatbot.errors import InvalidRequestError, NotFoundError
from chatbot.store.api_keys import ApiKeyStore


def test_keys_are_kept_as_digests_and_revoked_for_every_replica(database_url: str) -> None:
    first = ApiKeyStore.open(database_url)
    second = ApiKeyStore.open(database_url)  # another replica: its own pool
    try:
        key, info = first.create(User(id="alice", name="Alice"))
        assert key.startswith("cb-") and info.prefix == key[:11]
        assert second.user_for(key) == User(id="alice", name="Alice")
        assert second.user_for(key + "x") is None
        with first._engine.connect() as connection:  # the raw row: no key, its digest
            row = connection.execute(text("SELECT * FROM api_keys")).mappings().one()
        assert key not in {str(v) for v in row.values()}
        assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
        assert row["last_used_at"] is not None

        revoked = first.revoke(info.prefix)
        assert revoked.revoked_at is not None
        assert second.user_for(key) is None
        assert first.revoke(info.id).revoked_at == revoked.revoked_at  # idempotent
        [listed] = second.list_keys()
        assert listed.id == info.id and listed.revoked_at is not None
    finally:
        first.close()
        second.close()


def test_revoking_an_unknown_or_ambiguous_key_says_so(database_url: str) -> None:
    store = ApiKeyStore.open(database_url)
    try:
        with pytest.raises(NotFoundError, match="keys list"):
            store.revoke("cb-nothing")
        _, one = store.create(User(id="a", name="a"))
        _, two = store.create(User(id="b", name="b"))
        with store._engine.begin() as connection:  # force a shared prefix
            connection.execute(
                text("UPDATE api_keys SET prefix = :p WHERE id = :id"),
                {"p": one.prefix, "id": two.id},
            )
        with pytest.raises(InvalidRequestError, match="revoke by id"):
            store.revoke(one.prefix)
        assert store.revoke(two.id).user.id == "b"
    finally:
        store.close()
