"""Sign-in failures reach the page as ``?signin_error=<reason>`` instead of vanishing.

Streamlit's sign-in routes (``/auth/login``, ``/oauth2callback``) answer a failure with a
plain-text 400 or a silent redirect to the app, so the page could not tell a user why they are
still signed out. This ASGI middleware watches those two routes and turns each failure into a
redirect to the app with a reason the page explains (see :mod:`chatbot.ui.signin`); the
cookies Streamlit clears on the way are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qs, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ERROR_PARAM: Final = "signin_error"
LOGIN_PATH: Final = "/auth/login"
CALLBACK_PATH: Final = "/oauth2callback"
USER_COOKIE: Final = b"_streamlit_user="
# Reasons the page knows, besides a provider's own OAuth error code (e.g. access_denied).
PROVIDER_UNREACHABLE: Final = "provider_unreachable"
EXCHANGE_FAILED: Final = "exchange_failed"
_OAUTH_CODE = re.compile(r"[a-z_]{1,64}")


def failure_reason(
    path: str, query: str, status: int, headers: Iterable[tuple[bytes, bytes]]
) -> str | None:
    """Why a sign-in route's answer is a failure, or None when it is not one."""
    if path.endswith(LOGIN_PATH):
        return PROVIDER_UNREACHABLE if status >= 400 else None
    params = parse_qs(query)
    if "error" in params:
        code = params["error"][0]
        return code if _OAUTH_CODE.fullmatch(code) else "error"
    if "code" not in params:
        return None  # back from the provider's sign-out page: not a sign-in
    signed_in = any(
        name.lower() == b"set-cookie" and _sets_user_cookie(value) for name, value in headers
    )
    return None if signed_in else EXCHANGE_FAILED


def _sets_user_cookie(header: bytes) -> bool:
    """A ``Set-Cookie`` that stores the identity cookie (not one that deletes it)."""
    if not header.startswith(USER_COOKIE):
        return False
    value, _, attributes = header[len(USER_COOKIE) :].partition(b";")
    return value.strip(b'" ') != b"" and b"max-age=0" not in attributes.lower().replace(b" ", b"")


class SignInFailures:
    """ASGI middleware for the two sign-in routes; every other request passes untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path.endswith(LOGIN_PATH) or path.endswith(CALLBACK_PATH)):
            await self.app(scope, receive, send)
            return
        base = path.removesuffix(LOGIN_PATH).removesuffix(CALLBACK_PATH)
        query = scope.get("query_string", b"").decode("latin-1")
        replaced = False

        async def send_checked(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                reason = failure_reason(path, query, message["status"], headers)
                if reason is not None:
                    replaced = True
                    location = f"{base}/?{urlencode({ERROR_PARAM: reason})}"
                    cookies = [(n, v) for n, v in headers if n.lower() == b"set-cookie"]
                    message = {
                        "type": "http.response.start",
                        "status": 302,
                        "headers": [
                            (b"location", location.encode("latin-1")),
                            (b"content-length", b"0"),
                            *cookies,
                        ],
                    }
            elif message["type"] == "http.response.body" and replaced:
                if message.get("more_body", False):
                    return  # the original body is dropped; the last part ends the response
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app(scope, receive, send_checked)
