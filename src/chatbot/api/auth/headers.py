"""Reading the identity headers of a request: bearer, named user, proxy header, peer.

``X-Chatbot-User`` and ``X-Chatbot-User-Name`` are percent-encoded by the sender (headers
are latin-1; ids and names are not), so they are decoded here and then validated as a
:class:`User`. None of these values is ever logged.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from starlette.types import Scope

from chatbot.api.auth.failures import AuthFailure, bad_identity
from chatbot.domain.users import USER_ID_MAX_CHARS, User, proxy_header_user

USER_HEADER = "x-chatbot-user"
USER_NAME_HEADER = "x-chatbot-user-name"


@dataclass(frozen=True, slots=True)
class RequestIdentity:
    """What a request says about who it is; nothing here is trusted yet."""

    bearer: str | None
    named_user: str | None
    named_name: str | None
    proxy_value: str | None
    peer: str | None


def read_identity(scope: Scope, proxy_header: str) -> RequestIdentity:
    wanted = {b"authorization", USER_HEADER.encode(), USER_NAME_HEADER.encode()}
    proxy = proxy_header.lower().encode()
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", []):
        if (name in wanted or name == proxy) and name not in found:
            found[name] = value
    bearer = None
    scheme, _, token = found.get(b"authorization", b"").partition(b" ")
    if scheme.lower() == b"bearer" and token.strip():
        bearer = token.strip().decode("latin-1")
    client = scope.get("client")
    return RequestIdentity(
        bearer=bearer,
        named_user=_text(found.get(USER_HEADER.encode())),
        named_name=_text(found.get(USER_NAME_HEADER.encode())),
        proxy_value=_text(found.get(proxy)),
        peer=str(client[0]) if client else None,
    )


def named_user(identity: RequestIdentity) -> User:
    """The user named by ``X-Chatbot-User`` (and its display name), decoded and validated."""
    raw = identity.named_user or ""
    user_id = _percent_decoded(raw, "X-Chatbot-User")
    name = (
        _percent_decoded(identity.named_name, "X-Chatbot-User-Name") if identity.named_name else ""
    )
    try:
        return User(id=user_id, name=(name or user_id)[:USER_ID_MAX_CHARS])
    except ValueError:
        raise bad_identity(
            f"X-Chatbot-User must be a percent-encoded user id of 1 to {USER_ID_MAX_CHARS} "
            "printable characters",
            "invalid_user",
        ) from None


def proxy_user(value: str, header: str) -> User:
    try:
        return proxy_header_user(value)
    except ValueError:
        raise bad_identity(
            f"the proxy's {header} header does not hold a usable user id (1 to "
            f"{USER_ID_MAX_CHARS} printable characters)",
            "invalid_user",
        ) from None


def _percent_decoded(value: str, header: str) -> str:
    try:
        return urllib.parse.unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise bad_identity(
            f"{header} is not percent-encoded UTF-8 (encode it with "
            "urllib.parse.quote(value, safe=''))",
            "invalid_user",
        ) from None


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        text = value.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = value.decode("latin-1").strip()
    return text or None


__all__ = ["AuthFailure", "RequestIdentity", "named_user", "proxy_user", "read_identity"]
