"""Replies over HTTP: SSE through sse-starlette (heartbeats included), or one JSON answer.

Two kinds of reply reach here, both run by :mod:`chatbot.service.runner`:

- one-shot replies (``/chat``, ``/v1/chat/completions``): the client owns the reply, so its
  going away stops the model (counted as ``disconnect``);
- conversation replies: the service owns the reply, so a client going away only stops reading
  and the reply goes on for the next reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import asdict
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from chatbot.domain import ReplyEvent, ReplyEventType
from chatbot.errors import ChatbotError, GenerationError, error_from_event, event_fields
from chatbot.service.runner import Reply, ReplyEnd, StopReason
from chatbot.service.waiting import WaitState

T = TypeVar("T")

# no-cache: nobody stores a live stream; X-Accel-Buffering: nginx must not buffer it.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = "[DONE]"
CLIENT_CLOSED = 499  # nginx's code: nobody reads it, the client has gone


def compact(payload: Any) -> str:
    """Compact JSON on one line, UTF-8 (an SSE ``data:`` field must not contain newlines)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def event_stream(
    body: AsyncIterator[str | ServerSentEvent], heartbeat_s: float
) -> EventSourceResponse:
    """Each string is one ``data:`` event; a ``: ping`` comment every ``heartbeat_s`` of silence."""
    return EventSourceResponse(body, headers=SSE_HEADERS, ping=heartbeat_s, sep="\n")


async def until_done_or_gone(work: Awaitable[T], request: Request) -> T | None:
    """The result of ``work``, or None when the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        return None
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def one_shot_text(reply: Reply, request: Request) -> tuple[str, ReplyEnd] | Response:
    """The whole text of a one-shot reply; a 499 (and the model stopped) if the client left."""
    end = await until_done_or_gone(reply.wait_finished(), request)
    if end is None:
        reply.stop(StopReason.DISCONNECT)
        return Response(status_code=CLIENT_CLOSED)
    if end.error is not None:
        raise end.error
    return reply.text(), end


def wait_comment(state: WaitState) -> ServerSentEvent:
    """A wait state as an SSE comment: ``: waiting {"phase": "queued", ...}``.

    A comment, not an event: OpenAI's clients (and any SSE reader) skip comments, while a named
    event or an unknown ``data:`` chunk could break them; a client that wants the wait reads it.
    """
    fields = {key: value for key, value in asdict(state).items() if value is not None}
    return ServerSentEvent(comment=f"waiting {compact(fields)}", sep="\n")


async def one_shot_events(reply: Reply) -> AsyncIterator[str | ReplyEnd | WaitState]:
    """A one-shot reply's wait states, then its pieces; leaving early (client gone) stops it."""
    try:
        async for state in reply.waiting():
            yield state
        async for item in reply.stream(catch_up=False):
            yield item
    finally:
        reply.stop(StopReason.DISCONNECT)


# -- conversation replies ------------------------------------------------------------------
async def serve_conversation_reply(
    events: AsyncIterator[ReplyEvent], *, stream: bool, heartbeat_s: float
) -> Response:
    """SSE of the reply's events, or its final message as JSON (errors as statuses)."""
    if stream:
        return event_stream(_frames(events), heartbeat_s)
    last: ReplyEvent | None = None
    async for event in events:
        last = event
    if last is not None and last.type is ReplyEventType.DONE and last.message is not None:
        return JSONResponse(last.message.model_dump(mode="json"))
    if last is not None and last.type is ReplyEventType.ERROR:
        raise error_of(last)
    raise GenerationError("the reply ended without a final message")


async def _frames(events: AsyncIterator[ReplyEvent]) -> AsyncIterator[str]:
    try:
        async for event in events:
            yield event.model_dump_json()
    except ChatbotError as exc:
        yield compact(error_event_payload(exc))


def error_event_payload(exc: ChatbotError, conversation_id: str = "") -> dict[str, Any]:
    event = ReplyEvent(
        type=ReplyEventType.ERROR,
        conversation_id=conversation_id,
        error=exc.message,
        error_code=exc.code,
        **event_fields(exc),
    )
    return event.model_dump(mode="json")


def error_of(event: ReplyEvent) -> ChatbotError:
    """The error an ``error`` event stands for, rebuilt through the one table."""
    return error_from_event(event.model_dump(mode="json"))
