"""Pure ASGI middleware (no BaseHTTPMiddleware: it would break streaming and disconnects).

Order, outermost first: CORS, metrics, drain, auth (:mod:`chatbot.api.auth`), body limit,
then the app.
"""

from __future__ import annotations

import asyncio
import contextlib
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
# After the drain's grace, how long a request still working on its answer may take to give it
# before the server answers 503 for it (well within the server's own wait before exiting).
SHUTDOWN_ANSWER_WAIT_S = 1.0


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
            await self._serve(scope, receive, send)
        finally:
            self.runtime.active.leave()

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request; if the drain's grace ends before it answered, answer 503 for it.

        A stream has already answered (its status line is out) and ends itself with an error
        event; a request that is still working on a plain answer (a non-streamed reply) would
        otherwise be cut by uvicorn's shutdown with a plain-text 500.
        """
        answered = False

        async def watching_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        app = asyncio.ensure_future(self.app(scope, receive, watching_send))
        aborted = asyncio.ensure_future(self.runtime.drain.wait_aborted())
        try:
            await asyncio.wait({app, aborted}, return_when=asyncio.FIRST_COMPLETED)
            if not app.done() and not answered:
                # The replies were just stopped: most routes answer on their own at once.
                await asyncio.wait({app}, timeout=SHUTDOWN_ANSWER_WAIT_S)
            if app.done() or answered:
                await app
                return
            app.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await app
            await send_error(
                send,
                503,
                "the server is shutting down and stopped this request before it finished; "
                "retry on another instance",
                "service_unavailable",
                "shutting_down",
                [(b"connection", b"close"), (b"retry-after", b"1")],
            )
        finally:
            aborted.cancel()
            if not app.done():
                app.cancel()
                with contextlib.suppress(BaseException):
                    await app


class BodyLimitMiddleware:
    """Reads the whole body first, refusing it with 413 as soon as it passes the limit.

    Counting while reading covers chunked bodies, which have no Content-Length to check. A
    body that does not arrive in full within ``timeout_s`` (declared but never sent, or
    trickled) gets a 408 and the connection is closed. The buffered body is then replayed,
    and later ``receive`` calls (disconnect) pass through.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send)
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                body = await self._read(receive)
        except _TooLarge:
            await self._too_large(send)
            return
        except TimeoutError:
            await send_error(
                send,
                408,
                f"the request body did not arrive within {self.timeout_s:g} s "
                "(CHATBOT_BODY_TIMEOUT_S); send the whole body at once",
                "invalid_request_error",
                "body_timeout",
                [(b"connection", b"close")],
            )
            return
        if body is None:  # the client went away
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

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


class _TooLarge(Exception):
    """The body passed the limit while being read."""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
