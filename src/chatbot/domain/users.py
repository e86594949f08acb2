"""Who a request acts for.

Every conversation has an owner, a :class:`User` id. Identities come from the one setting
``CHATBOT_AUTH`` (see :class:`chatbot.config.AuthSettings`): ``none`` is one local user, ``oidc``
is the provider's issuer plus subject, ``header`` is the value an authenticating proxy sets, and
a per-user API key names its user.
"""

from __future__ import annotations

from dataclasses import dataclass

USER_ID_MAX_CHARS = 512


@dataclass(frozen=True, slots=True)
class User:
    """``id`` is stable and unique (the owner column); ``name`` is only for display."""

    id: str
    name: str

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > USER_ID_MAX_CHARS or not self.id.isprintable():
            raise ValueError(
                f"a user id is 1 to {USER_ID_MAX_CHARS} printable characters, got {self.id!r:.80}"
            )


LOCAL_USER = User(id="local", name="local user")
"""The one user of ``CHATBOT_AUTH=none``; conversations from before ownership belong to it."""


def oidc_user_id(issuer: str, subject: str) -> str:
    """The issuer plus the subject: a subject is only unique within its issuer."""
    return f"{issuer.rstrip('/')}#{subject}"


PROXY_PREFIXES = ("accounts.google.com:",)
"""Prefixes proxies put before the user (Google IAP: ``accounts.google.com:a@b.c``), removed."""


def proxy_header_user(value: str) -> User:
    """The user an authenticating proxy named in its header (``CHATBOT_AUTH=header``).

    The id is the header's value (usually an e-mail) without a known prefix; the UI and the
    backend both use this, so a user is the same owner behind either. ValueError if unusable.
    """
    value = value.strip()
    for prefix in PROXY_PREFIXES:
        if value.startswith(prefix):
            value = value[len(prefix) :]
    return User(id=value, name=value)
