"""Pure ASGI middleware: every request but the public ones gets its user or an error answer.

The user goes to ``scope["state"]["user"]`` (read by :func:`chatbot.api.deps.get_current_user`).
Errors are OpenAI-shaped; a 401 carries ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from chatbot.api.auth.failures import AuthFailure
from chatbot.api.auth.resolver import Authenticator
from chatbot.api.middleware import PUBLIC_PATHS, send_error


class AuthMiddleware:
    """Resolves who each request acts for (see :mod:`chatbot.api.auth.resolver`)."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            user = await self.authenticator.user_for(scope)
        except AuthFailure as failure:
            extra = [(b"www-authenticate", b"Bearer")] if failure.status == 401 else []
            if failure.status == 503:
                extra.append((b"retry-after", b"2"))
            await send_error(
                send, failure.status, failure.message, failure.error_type, failure.code, extra
            )
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)
