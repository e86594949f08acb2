"""One engine generation for an HTTP request: admission, timeouts, drain, cancel and metrics.

Shared by the seed route and the OpenAI route. The caller reserves a place before any response
starts (so overload is a plain 429), then reads :class:`Text`, :class:`Ping` and
:class:`Finished` items. Whatever way the reader leaves (end, error, client gone), :meth:`close`
cancels the engine and gives the place back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from starlette.types import Receive

from chatbot.service.admission import Ticket
from chatbot.api.state import Runtime
from chatbot.domain import GenerationParams, Message
from chatbot.engine import Generation, GenerationOutcome
from chatbot.errors import RequestTimeoutError, UnavailableError

logger = logging.getLogger(__name__)

_TICK_S = 0.25


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Ping:
    """Nothing to send for a heartbeat interval (waiting in the queue, or a long prefill)."""


@dataclass(frozen=True)
class Finished:
    outcome: GenerationOutcome


Item = Text | Ping | Finished


class EngineCall:
    """A generation bound to one request; create, :meth:`admit`, iterate :meth:`items`, close."""

    def __init__(
        self,
        runtime: Runtime,
        messages: Sequence[Message],
        params: GenerationParams,
        endpoint: str,
    ) -> None:
        self.runtime = runtime
        self.messages = list(messages)
        self.params = params
        self.endpoint = endpoint
        self.arrived = time.monotonic()
        self.ticket: Ticket | None = None
        self.generation: Generation | None = None
        self._stream: AsyncIterator[str] | None = None
        self._pending: asyncio.Future[str] | None = None
        self._closed = False
        self._finished = False

    # -- before the response ---------------------------------------------------------------
    async def admit(self) -> None:
        """Take a place or a queue slot (429 at once when full); start at once if placed.

        Starting here means prompt errors (context overflow) are still a plain 4xx. The start
        runs in a worker thread: it tokenizes the prompt, and for the openai engine it waits
        for the upstream's answer, neither of which may hold up the event loop.
        """
        engine = self.runtime.engine
        if engine is None or not self.runtime.ready.is_set():
            raise UnavailableError("the model is still loading; retry shortly", code="not_ready")
        try:
            self.ticket = self.runtime.admission.reserve()
        except Exception:
            self.runtime.metrics.rejected.labels("overloaded").inc()
            raise
        if self.ticket.granted:
            try:
                await asyncio.to_thread(self._start)
            except BaseException:
                self.close()
                raise

    @property
    def started(self) -> bool:
        return self.generation is not None

    def _start(self) -> None:
        assert self.runtime.engine is not None
        generation = self.runtime.engine.start(self.messages, self.params)
        self.started_at = time.monotonic()
        self.generation = generation
        if self._closed:  # the request went away while the start ran in its thread
            generation.cancel()

    # -- reading ---------------------------------------------------------------------------
    async def items(self) -> AsyncIterator[Item]:
        """Pings while queued or silent, text chunks, then one Finished; errors raise."""
        server = self.runtime.server
        last_sent = time.monotonic()
        if not self.started:
            async for ping in self._wait_for_place():
                yield ping
            await asyncio.to_thread(self._start)
        assert self.generation is not None
        deadline = self.started_at + server.request_timeout_s
        self._stream = self.generation.stream()
        first = True
        previous = time.monotonic()
        while True:
            # Checked before every chunk too: a stream that never goes quiet must still end
            # at its deadline or when a drain runs out of grace.
            self._check(time.monotonic(), deadline, "generating")
            if self._pending is None:
                self._pending = asyncio.ensure_future(anext(self._stream))
            done, _ = await asyncio.wait({self._pending}, timeout=_TICK_S)
            now = time.monotonic()
            if done:
                task, self._pending = self._pending, None
                try:
                    chunk = task.result()
                except StopAsyncIteration:
                    break
                metrics = self.runtime.metrics
                if first:
                    metrics.time_to_first_token.labels(self.endpoint).observe(now - self.arrived)
                    first = False
                else:
                    metrics.inter_token_latency.labels(self.endpoint).observe(now - previous)
                previous = now
                last_sent = now
                yield Text(chunk)
                continue
            if now - last_sent >= server.heartbeat_s:
                last_sent = now
                yield Ping()
        outcome = self.generation.outcome
        assert outcome is not None
        self._finished = True
        self._count(outcome)
        yield Finished(outcome)

    async def _wait_for_place(self) -> AsyncIterator[Ping]:
        assert self.ticket is not None
        server = self.runtime.server
        waiting = asyncio.ensure_future(self.ticket.wait_async(server.queue_timeout_s))
        last_ping = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=_TICK_S)
                if done:
                    waiting.result()
                    return
                now = time.monotonic()
                self._check(now, None, "waiting in the queue")
                if now - last_ping >= server.heartbeat_s:
                    last_ping = now
                    yield Ping()
        finally:
            if not waiting.done():
                waiting.cancel()

    def _check(self, now: float, deadline: float | None, doing: str) -> None:
        if self.runtime.drain.aborted:
            self.runtime.metrics.cancelled.labels("shutdown").inc()
            raise UnavailableError(
                f"the server is shutting down; the request was stopped while {doing}",
                code="shutting_down",
            )
        if deadline is not None and now >= deadline:
            self.runtime.metrics.cancelled.labels("timeout").inc()
            raise RequestTimeoutError(
                f"the request ran past the limit of {self.runtime.server.request_timeout_s:g} s "
                "(CHATBOT_REQUEST_TIMEOUT_S) and was stopped",
                code="request_timeout",
            )

    def _count(self, outcome: GenerationOutcome) -> None:
        metrics = self.runtime.metrics
        metrics.tokens_generated.labels(self.endpoint).inc(outcome.usage.completion_tokens)
        metrics.prompt_tokens.labels(self.endpoint).inc(outcome.usage.prompt_tokens)

    # -- the end ---------------------------------------------------------------------------
    def close(self, reason: str = "disconnect") -> None:
        """Cancel an unfinished generation and free the place; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        generation = self.generation
        if generation is not None and not self._finished:
            generation.cancel()
            if reason == "disconnect":
                self.runtime.metrics.cancelled.labels("disconnect").inc()
            self._follow_cancelled(generation, pending)
        if self.ticket is not None:
            self.ticket.release()

    def _follow_cancelled(
        self, generation: Generation, pending: asyncio.Future[str] | None
    ) -> None:
        """Count what the engine still produces after the cancel (should be a token or two)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._drain_cancelled(generation, pending))
        self.runtime.background.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self.runtime.background.remove(task)

    async def _drain_cancelled(
        self, generation: Generation, pending: asyncio.Future[str] | None
    ) -> None:
        extra = 0
        if pending is not None:  # let the old reader unregister before a new one starts
            with contextlib.suppress(BaseException):
                await pending
        try:
            async with asyncio.timeout(30):
                async for _ in generation.stream():
                    extra += 1
        except Exception:  # an error after a cancel is expected and not interesting
            logger.debug("cancelled generation ended with an error", exc_info=True)
        self.runtime.metrics.tokens_after_cancel.inc(extra)
        if generation.outcome is not None:
            self._count(generation.outcome)


async def run_to_end(call: EngineCall, receive: Receive) -> tuple[str, GenerationOutcome] | None:
    """Admit, then collect the whole reply; None when the client left (generation cancelled)."""
    await call.admit()
    reader = asyncio.ensure_future(_collect(call))
    watcher = asyncio.ensure_future(_until_disconnect(receive))
    try:
        done, _ = await asyncio.wait({reader, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done:
            return reader.result()
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        return None
    finally:
        watcher.cancel()
        reader.cancel()
        call.close()


async def _collect(call: EngineCall) -> tuple[str, GenerationOutcome]:
    parts: list[str] = []
    async for item in call.items():
        if isinstance(item, Text):
            parts.append(item.text)
        elif isinstance(item, Finished):
            return "".join(parts), item.outcome
    raise AssertionError("a generation ended without an outcome")


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
