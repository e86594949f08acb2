"""Serving a ChatService reply stream over HTTP: one JSON message, or SSE of ReplyEvents.

The service owns the reply (it goes on if the client leaves, and a client can re-attach), so
unlike the OpenAI route a disconnect here only stops the reading, not the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator

from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from chatbot.api import sse
from chatbot.api.error_handlers import body_of
from chatbot.api.state import Runtime
from chatbot.domain import ReplyEvent, ReplyEventType
from chatbot.errors import (
    ChatbotError,
    GenerationError,
    InvalidRequestError,
    OverloadedError,
    RequestTimeoutError,
    UnavailableError,
    UpstreamError,
)

logger = logging.getLogger(__name__)

_TICK_S = 0.25


async def serve_reply(
    runtime: Runtime,
    conversation_id: str,
    start: Callable[[], Iterator[ReplyEvent]],
    *,
    stream: bool,
    empty_status: int | None = None,
) -> Response:
    """Start the reply in a thread (its errors are plain statuses), then answer or stream it."""
    events, first = await run_in_threadpool(_first, start)
    if first is None:
        if empty_status is not None:
            return Response(status_code=empty_status)
        raise GenerationError("the reply ended before it began")
    if not stream:
        rest = await run_in_threadpool(list, events)
        return _final(first, rest)
    return sse.event_stream(_events(runtime, conversation_id, first, events))


def _first(
    start: Callable[[], Iterator[ReplyEvent]],
) -> tuple[Iterator[ReplyEvent], ReplyEvent | None]:
    events = iter(start())
    return events, next(events, None)


def _final(first: ReplyEvent, rest: list[ReplyEvent]) -> JSONResponse:
    last = rest[-1] if rest else first
    if last.type is ReplyEventType.DONE and last.message is not None:
        return JSONResponse(last.message.model_dump(mode="json"))
    if last.type is ReplyEventType.ERROR:
        raise _error_of(last)
    raise GenerationError("the reply ended without a final message")


def _error_of(event: ReplyEvent) -> ChatbotError:
    message = event.error or "the reply failed"
    code = event.error_code
    if code == "context_length_exceeded":
        return InvalidRequestError(message, param="content", code=code)
    if code == "overloaded":
        return OverloadedError(message, retry_after_s=1)
    # The service names an error by its code, or by its class's error_type when it has none.
    if code in (
        "queue_timeout",
        "not_ready",
        "shutting_down",
        "database_unavailable",
        UnavailableError.error_type,
    ):
        return UnavailableError(message, code=code)
    if code == UpstreamError.error_type:
        return UpstreamError(message, code=code)
    return GenerationError(message, code=code)


async def _events(
    runtime: Runtime, conversation_id: str, first: ReplyEvent, events: Iterator[ReplyEvent]
) -> AsyncIterator[bytes]:
    yield _frame(first)
    server = runtime.server
    started = last_sent = time.monotonic()
    try:
        async for event in sse.iterate_in_thread(events, _TICK_S):
            now = time.monotonic()
            # Checked on events too, not only on quiet ticks: a reply that streams without a
            # pause must still end at a drain's end or at its deadline.
            if runtime.drain.aborted:
                raise UnavailableError(
                    "the server is shutting down; re-attach to the reply elsewhere",
                    code="shutting_down",
                )
            if now - started > server.request_timeout_s:
                await run_in_threadpool(_stop, runtime, conversation_id)
                raise RequestTimeoutError(
                    f"the reply ran past the limit of {server.request_timeout_s:g} s "
                    "(CHATBOT_REQUEST_TIMEOUT_S) and was stopped",
                    code="request_timeout",
                )
            if event is not None:
                last_sent = now
                yield _frame(event)
                continue
            if now - last_sent >= server.heartbeat_s:
                last_sent = now
                yield sse.PING
    except ChatbotError as exc:
        yield sse.data(_error_event(conversation_id, exc))
    except Exception:
        logger.exception("a reply stream failed")
        yield sse.data(_error_event(conversation_id, GenerationError("the reply stream failed")))


def _frame(event: ReplyEvent) -> bytes:
    return sse.data(event.model_dump(mode="json"))


def _error_event(conversation_id: str, exc: ChatbotError) -> dict[str, object]:
    event = ReplyEvent(
        type=ReplyEventType.ERROR,
        conversation_id=conversation_id,
        error=exc.message,
        error_code=exc.code,
    )
    payload = event.model_dump(mode="json")
    payload["error_body"] = body_of(exc)["error"]
    return payload


def _stop(runtime: Runtime, conversation_id: str) -> None:
    if runtime.service is not None:
        runtime.service.stop(conversation_id)
