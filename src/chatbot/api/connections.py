"""Connection hygiene below the app: timeouts for request heads, and no secrets in access logs.

uvicorn closes a kept-alive connection that stays idle after a response, but it waits forever
on a new connection that sends nothing, and on one that sends its request line and headers a
byte at a time (slow loris): each holds a socket and a file descriptor. The protocol here
closes a connection whose request head has not fully arrived ``header_timeout_s`` after it
opened or after its previous response. A body that never comes is the app's to time out
(:class:`chatbot.api.middleware.BodyLimitMiddleware`).
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import unquote_plus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

# Query parameters whose values are never logged: any name containing one of these.
SECRET_NAME_PARTS = ("key", "token", "secret", "pass", "auth", "sig", "session", "credential")
REDACTED = "***"


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus a deadline for each request's head."""

    header_timeout_s: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_received():
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._head_received():
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _head_received(self) -> bool:
        """A request's headers are all in, and its response is not finished yet."""
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_received() or self.transport.is_closing():
            return
        logger.info(
            "closing a connection: no complete request head within %g s (CHATBOT_HEADER_TIMEOUT_S)",
            self.header_timeout_s,
        )
        self.transport.close()


def head_timeout_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    """The protocol class uvicorn builds for each connection, with this deadline."""
    return type(
        "HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"header_timeout_s": header_timeout_s}
    )


class RedactQuery(logging.Filter):
    """Replaces the values of secret-looking query parameters in uvicorn's access log lines.

    An API key belongs in the ``Authorization`` header, but a client may put it in the URL
    (``?api_key=...``); uvicorn logs the full path with its query, so the log would keep it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def redact_query(path: str) -> str:
    """``/v1/x?api_key=abc&limit=5&sk-1`` -> ``/v1/x?api_key=***&limit=5&***``."""
    base, mark, query = path.partition("?")
    if not mark:
        return path
    parts = []
    for part in query.split("&"):
        name, sep, _value = part.partition("=")
        lowered = unquote_plus(name).lower()
        if not sep:  # a bare value (``?sk-...``) may be a key itself
            part = REDACTED if part else ""
        elif any(word in lowered for word in SECRET_NAME_PARTS):
            part = f"{name}={REDACTED}"
        parts.append(part)
    return f"{base}?{'&'.join(parts)}"


def install_access_log_redaction() -> None:
    """Add :class:`RedactQuery` to uvicorn's access logger, once."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQuery) for f in access.filters):
        access.addFilter(RedactQuery())
