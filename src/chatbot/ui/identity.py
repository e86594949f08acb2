"""Who is using this browser session, per ``CHATBOT_AUTH``.

- ``none``: the one local user;
- ``oidc``: Streamlit's ``st.user`` after ``st.login()``; the id is issuer plus subject;
- ``header``: ``st.context.headers[CHATBOT_AUTH_HEADER]``, which only a trusted proxy's
  request still carries (:mod:`chatbot.ui.proxy` removes it from any other peer).

Reading is separate from drawing: :func:`who` answers an :class:`Account` or the reason there
is none, and :mod:`chatbot.ui.signin` draws the page for that reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import streamlit as st

from chatbot.config import AuthMode, AuthSettings
from chatbot.domain.users import LOCAL_USER, User, oidc_user_id

# The [auth] keys Streamlit needs for its default provider (see st.login's documentation).
AUTH_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")


@dataclass(frozen=True)
class Account:
    """The signed-in user, and whether this page offers a sign-out (oidc only)."""

    user: User
    can_sign_out: bool = False


Reason = Literal["sign_in", "not_configured", "bad_identity", "no_header"]


@dataclass(frozen=True)
class NoAccount:
    """Why nobody is signed in; ``detail`` says what to fix, in words."""

    reason: Reason
    detail: str = ""


def who(auth: AuthSettings) -> Account | NoAccount:
    """The account of this run, or why there is none."""
    match auth.auth:
        case AuthMode.NONE:
            return Account(LOCAL_USER)
        case AuthMode.HEADER:
            return from_header(st.context.headers, auth.auth_header)
        case AuthMode.OIDC:
            missing = missing_auth_keys(_auth_secrets())
            if missing:
                return NoAccount(
                    "not_configured",
                    "The [auth] section of the UI's secrets.toml lacks "
                    + ", ".join(missing)
                    + ". Add them (see the deployment guide) and restart the UI.",
                )
            return from_oidc(st.user.to_dict())
    raise AssertionError(auth.auth)


def from_header(headers: Mapping[str, str], header: str) -> Account | NoAccount:
    value = (headers.get(header) or "").strip()
    if not value:
        return NoAccount(
            "no_header",
            f"This UI takes the user from the {header} header, which only an authenticating "
            "proxy listed in CHATBOT_TRUSTED_PROXIES may set; this request did not come "
            "through one.",
        )
    try:
        return Account(User(id=value, name=value))
    except ValueError as exc:
        return NoAccount("bad_identity", f"The {header} header is not a usable user name: {exc}")


def from_oidc(claims: Mapping[str, Any]) -> Account | NoAccount:
    """``st.user``'s claims: signed in with an issuer and a subject, or not signed in."""
    if not claims.get("is_logged_in"):
        return NoAccount("sign_in")
    issuer, subject = claims.get("iss"), claims.get("sub")
    if not isinstance(issuer, str) or not isinstance(subject, str) or not issuer or not subject:
        return NoAccount(
            "bad_identity",
            "The provider's ID token names no issuer (iss) or subject (sub); this app needs "
            "both to tell users apart.",
        )
    name = next(
        (str(claims[k]) for k in ("name", "email", "preferred_username") if claims.get(k)), subject
    )
    try:
        return Account(User(id=oidc_user_id(issuer, subject), name=name), can_sign_out=True)
    except ValueError as exc:
        return NoAccount("bad_identity", f"The provider's user id cannot be used: {exc}")


def missing_auth_keys(section: Mapping[str, Any] | None) -> list[str]:
    """The [auth] keys Streamlit's sign-in needs that ``section`` lacks."""
    section = section or {}
    provider = section.get("default")
    provider = provider if isinstance(provider, Mapping) else {}
    return [key for key in AUTH_KEYS if not section.get(key) and not provider.get(key)]


def _auth_secrets() -> Mapping[str, Any] | None:
    if not st.secrets.load_if_toml_exists():
        return None
    section = st.secrets.get("auth")
    return section if isinstance(section, Mapping) else None
