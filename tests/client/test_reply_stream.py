"""HttpChatService reads reply streams with httpx-sse: framing, errors by class, dropped links."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from chatbot import errors
from chatbot.domain import ReplyEventType
from chatbot.service.http import HttpChatService

SSE = {"content-type": "text/event-stream; charset=utf-8"}


def _event(kind: str, **fields: object) -> bytes:
    return f"data: {json.dumps({'type': kind, 'conversation_id': 'c', **fields})}\n\n".encode()


class _Chunks(httpx.SyncByteStream):
    """A response body sent piece by piece, optionally cut by a transport error."""

    def __init__(self, parts: list[bytes], fail: httpx.TransportError | None = None) -> None:
        self._parts, self._fail = parts, fail

    def __iter__(self) -> Iterator[bytes]:
        yield from self._parts
        if self._fail is not None:
            raise self._fail


def _service(handler: Callable[[httpx.Request], httpx.Response]) -> HttpChatService:
    return HttpChatService("http://backend", transport=httpx.MockTransport(handler))


def _streaming(parts: list[bytes], fail: httpx.TransportError | None = None) -> HttpChatService:
    return _service(lambda request: httpx.Response(200, headers=SSE, stream=_Chunks(parts, fail)))


def test_events_arrive_and_heartbeats_and_split_frames_are_ignored() -> None:
    done = _event("done")
    service = _streaming(
        [
            b": ping\n\n",
            _event("start"),
            b"event: ping\n\n",
            _event("delta", delta="Hel")[:12],  # a frame split across network reads
            _event("delta", delta="Hel")[12:],
            _event("delta", delta="lo").replace(b"\n", b"\r\n"),
            done[:-1],
            done[-1:],
            _event("delta", delta="never read"),
        ]
    )
    with service.send_message("c", "hi") as stream:
        events = list(stream)
    assert [e.type for e in events] == [
        ReplyEventType.START,
        ReplyEventType.DELTA,
        ReplyEventType.DELTA,
        ReplyEventType.DONE,
    ]
    assert "".join(e.delta for e in events) == "Hello"
    assert stream.error is None


def test_the_request_asks_for_an_event_stream() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers=SSE, stream=_Chunks([_event("done")]))

    list(_service(handler).send_message("c", "hi"))
    assert seen[0].headers["accept"] == "text/event-stream"
    assert json.loads(seen[0].content) == {"content": "hi", "stream": True}


def test_an_error_event_keeps_the_class_the_backend_raised() -> None:
    raised = errors.UpstreamTimeoutError("the upstream model server did not answer in time")
    error_event = _event("error", error=raised.message, **errors.event_fields(raised))
    stream = _streaming([_event("start"), error_event]).send_message("c", "hi")
    events = list(stream)
    assert events[-1].type is ReplyEventType.ERROR
    assert events[-1].error == raised.message
    assert type(stream.error) is errors.UpstreamTimeoutError
    assert stream.error.message == raised.message


def test_a_stream_cut_before_its_end_is_backend_unreachable() -> None:
    stream = _streaming([_event("start"), _event("delta", delta="a")]).send_message("c", "hi")
    with pytest.raises(errors.BackendUnreachableError, match="before it ended"):
        list(stream)


def test_a_dropped_connection_mid_reply_is_backend_unreachable() -> None:
    cut = httpx.RemoteProtocolError("peer closed connection without sending complete message")
    stream = _streaming([_event("start")], fail=cut).send_message("c", "hi")
    assert next(stream).type is ReplyEventType.START
    with pytest.raises(errors.BackendUnreachableError, match="lost the connection"):
        next(stream)


def test_a_read_timeout_mid_reply_is_backend_unreachable() -> None:
    stream = _streaming([], fail=httpx.ReadTimeout("slow")).send_message("c", "hi")
    with pytest.raises(errors.BackendUnreachableError, match="timed out"):
        list(stream)


def test_a_page_that_is_not_an_event_stream_is_an_upstream_error() -> None:
    service = _service(
        lambda request: httpx.Response(200, headers={"content-type": "text/html"}, text="<p>")
    )
    with pytest.raises(errors.UpstreamError, match="event stream"):
        list(service.send_message("c", "hi"))


def test_a_refusal_raises_at_the_call_with_retry_after_unchanged() -> None:
    status, body, headers = errors.to_http(errors.OverloadedError("busy", retry_after_s=12))
    service = _service(lambda request: httpx.Response(status, json=body, headers=headers))
    with pytest.raises(errors.OverloadedError) as info:
        service.send_message("c", "hi")
    assert info.value.retry_after_s == 12


def test_no_reply_to_attach_to_is_an_empty_stream() -> None:
    assert list(_service(lambda request: httpx.Response(204)).attach("c")) == []
