"""Pure ASGI middleware (no BaseHTTPMiddleware: it would break streaming and disconnects).

Order, outermost first: CORS, metrics, drain, auth, body limit, then the app.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatbot.api.error_handlers import error_body
from chatbot.api.runtime import Runtime

logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/", "/health", "/healthz", "/readyz"})
PROBE_PATHS = frozenset({"/health", "/healthz", "/readyz", "/metrics"})


async def send_error(
    send: Send,
    status: int,
    message: str,
    error_type: str,
    code: str | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(error_body(message, error_type, None, code)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class MetricsMiddleware:
    """Counts every response by method, route template (never the raw path) and status."""

    def __init__(self, app: ASGIApp, runtime: Runtime, routes: Callable[[], list[object]]) -> None:
        self.app = app
        self.runtime = runtime
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.runtime.metrics.requests.labels(
                scope.get("method", "?"), self._template(scope), str(status)
            ).inc()

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
        for candidate in self.routes():
            matches = getattr(candidate, "matches", None)
            if matches is None:
                continue
            match, _ = matches(scope)
            if match is not Match.NONE:
                return str(getattr(candidate, "path", "unmatched"))
        return "unmatched"


class DrainMiddleware:
    """While draining, new work gets 503 at once; counts requests so the drain knows when done."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        if self.runtime.drain.draining:
            self.runtime.metrics.rejected.labels("draining").inc()
            await send_error(
                send,
                503,
                "the server is shutting down; retry on another instance",
                "service_unavailable",
                "draining",
                [(b"connection", b"close"), (b"retry-after", b"1")],
            )
            return
        self.runtime.active.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.runtime.active.leave()


class AuthMiddleware:
    """``Authorization: Bearer <key>`` on every route but the public ones, in constant time."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
            await send_error(
                send,
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                "authentication_error",
                "invalid_api_key",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Reads the whole body first, refusing it with 413 as soon as it passes the limit.

    Counting while reading covers chunked bodies, which have no Content-Length to check.
    The buffered body is then replayed, and later ``receive`` calls (disconnect) pass through.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await send_error(
            send,
            413,
            f"the request body is larger than the limit of {self.max_bytes} bytes "
            "(CHATBOT_MAX_BODY_BYTES)",
            "invalid_request_error",
            "body_too_large",
            [(b"connection", b"close")],
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
