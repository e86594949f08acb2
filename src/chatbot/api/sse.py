"""Server-sent events: framing, the proxy-proof headers, and a bridge from blocking iterators."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse

T = TypeVar("T")

# no-cache: nobody stores a live stream; X-Accel-Buffering: nginx must not buffer it.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PING = b": ping\n\n"
DONE = b"data: [DONE]\n\n"


def data(payload: Any) -> bytes:
    """One ``data:`` event; compact JSON on a single line, UTF-8."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + text.encode("utf-8") + b"\n\n"


def raw_data(text: str) -> bytes:
    return b"data: " + text.encode("utf-8") + b"\n\n"


def event_stream(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


class _End:
    pass


_END = _End()


async def iterate_in_thread(iterator: Iterator[T], poll_s: float) -> AsyncIterator[T | None]:
    """Items of a blocking iterator, read by a thread; ``None`` every ``poll_s`` without one.

    The ``None`` ticks let the caller send heartbeats and notice a drain while the iterator
    blocks (a reply waiting for its place). When the caller stops early the thread stops
    reading at its next item and the iterator is closed there.
    """
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[T | _End | BaseException] = asyncio.Queue()
    stop = threading.Event()

    def put(item: T | _End | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody reads any more
            loop.call_soon_threadsafe(items.put_nowait, item)

    def pump() -> None:
        try:
            for item in iterator:
                if stop.is_set():
                    break
                put(item)
            put(_END)
        except BaseException as exc:  # handed to the reader, which re-raises it
            put(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    threading.Thread(target=pump, name="sse-reader", daemon=True).start()
    try:
        while True:
            try:
                item = await asyncio.wait_for(items.get(), poll_s)
            except TimeoutError:
                yield None
                continue
            if isinstance(item, _End):
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
