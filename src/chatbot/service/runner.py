"""One reply = one asyncio task, from admission to its end; the only reply pipeline there is.

Every route and both deployments go through here: ``/chat`` and ``/v1/chat/completions`` run
replies without a sink, conversation replies run with the store as their sink. The task owns,
in one place:

- the admission place (a ticket reserved before anything is stored, so a full server refuses
  with 429 at once; waited for without polling);
- the deadline (``request_timeout_s`` from admission on) and the stop reasons (stop, client
  gone, shutdown, timeout): each is a cancel of the task, which closes the engine's stream, so
  the engine stops within one step;
- the metrics (time to first token, inter-token latency, tokens, cancellations) with the
  route's label;
- the sink, which stores the end before any reader sees it.

Readers subscribe (any number, any time): the text so far as one piece, then each new piece,
then the :class:`ReplyEnd`. A reader leaving stops nothing; the API's one-shot routes stop the
reply themselves when their client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from chatbot.domain import (
    FinishReason,
    GenerationParams,
    Message,
    MessageStatus,
    ReplyStats,
    WaitPhase,
)
from chatbot.engine.base import Chunk, Engine, late_chunk_counter
from chatbot.engine.tool_request import ToolRequest, takes_native_tools
from chatbot.errors import (
    ChatbotError,
    GenerationError,
    OverloadedError,
    RequestTimeoutError,
    UnavailableError,
)
from chatbot.service.admission import AdmissionControl, Ticket
from chatbot.service.metrics import Metrics
from chatbot.service.waiting import (
    READING_NOTICE_TOKENS,
    WAIT_TICK_S,
    Pulse,
    ReplyTimes,
    RunnerStatus,
    Running,
    WaitState,
    estimate_start_s,
)

logger = logging.getLogger(__name__)


class StopReason(StrEnum):
    """Why a reply ended early; also the label of ``chatbot_generations_cancelled``."""

    STOP = "stop"  # the user pressed Stop (or another replica asked)
    DISCONNECT = "disconnect"  # a one-shot request's client went away
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class ReplyEnd:
    """How a reply ended: what the store keeps and what readers get last."""

    status: MessageStatus
    stats: ReplyStats
    error: ChatbotError | None = None


class ReplySink(Protocol):
    """Where a reply's end is stored before readers see it (the conversations' store)."""

    async def finish(self, text: str, end: ReplyEnd) -> None: ...


@dataclass(frozen=True)
class ReplyLimits:
    """Time limits of one reply, from the server settings."""

    queue_timeout_s: float = 120.0
    request_timeout_s: float = 600.0


class Reply:
    """A reply in progress; created by :meth:`ReplyRunner.start`."""

    def __init__(
        self,
        runner: ReplyRunner,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        endpoint: str,
        ticket: Ticket,
        sink: ReplySink | None,
        json_schema: Mapping[str, Any] | None = None,
        tools: ToolRequest | None = None,
    ) -> None:
        self._runner = runner
        self._messages = list(messages)
        self.params = params
        self._json_schema = json_schema
        self._tools = tools
        self.endpoint = endpoint
        self._ticket = ticket
        self._sink = sink
        self._pieces: list[str] = []
        self._started = False
        # Set once the text is final: a stop then would cancel the storing of the end.
        self._ending = False
        self.end: ReplyEnd | None = None
        self._changed = asyncio.Condition()
        self._accepted = asyncio.Event()
        self._stop_reason: StopReason | None = None
        self.arrived = time.monotonic()
        self.loaded_at: float | None = None  # when the model was ready for it
        self.granted_at: float | None = None  # when it got a place, after any wait in the queue
        self.prompt_tokens: int | None = None
        self._pulse = Pulse()  # fired on each change a waiting reader may want to report
        ticket.on_move = self._pulse.fire
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"reply-{endpoint}")

    # -- control ---------------------------------------------------------------------------
    @property
    def queue_position(self) -> int:
        """1 for the next in line, 0 once generating (or ended)."""
        return self._ticket.position

    @property
    def finished(self) -> bool:
        return self.end is not None

    def text(self) -> str:
        return "".join(self._pieces)

    def stop(self, reason: StopReason = StopReason.STOP) -> None:
        """End the reply early; the engine stops within one step. Idempotent."""
        if self.end is None and self._stop_reason is None and not self._ending:
            self._stop_reason = reason
            if self._started:  # a task cancelled before its first step would skip its ending
                self._task.cancel()

    async def wait_finished(self) -> ReplyEnd:
        await asyncio.shield(self._task)
        assert self.end is not None
        return self.end

    async def wait_started(self) -> None:
        """Until the prompt is accepted, or the reply waits in the queue, or it has ended.

        The one-shot routes call this before answering, so a prompt that cannot fit is still a
        plain 400 while a queued request gets its streaming answer (and heartbeats) at once.
        """
        if self._ticket.granted:
            waiter = asyncio.ensure_future(self._accepted.wait())
            await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        # The engine refused or failed before any text: a plain status says it best. A reply
        # the server itself ended (deadline, shutdown) answers in the stream it promised.
        end = self.end
        if end is not None and end.error is not None and self._stop_reason is None:
            raise end.error

    def tokens_left(self) -> int:
        """Tokens this reply may still make (its limit less the pieces so far, about a token
        each)."""
        return max(0, self.params.max_new_tokens - len(self._pieces))

    def wait_state(self) -> WaitState | None:
        """Why this reply has no text yet, or None when it is not waiting (or has text)."""
        if self._pieces or self.end is not None:
            return None
        if not self._runner.loaded:
            return WaitState(WaitPhase.LOADING)
        if not self._ticket.granted:
            position = self._ticket.position
            if position < 1:
                return None
            return WaitState(
                WaitPhase.QUEUED,
                queue_position=position,
                eta_s=self._runner.estimate_start_s(position),
            )
        tokens = self.prompt_tokens
        if tokens is not None and tokens >= READING_NOTICE_TOKENS:
            return WaitState(WaitPhase.READING, prompt_tokens=tokens)
        return None

    async def waiting(self) -> AsyncIterator[WaitState]:
        """Each new wait state until the first text or the end; nothing for a prompt reply.

        Sent again every :data:`WAIT_TICK_S` when it changes (a queued reply's estimate).
        """
        last: WaitState | None = None
        while not self._pieces and self.end is None:
            state = self.wait_state()
            if state is None and self._accepted.is_set():
                return  # generating; a short prompt has no notice
            if state is not None and state != last:
                last = state
                yield state
            await self._pulse.wait(WAIT_TICK_S)

    async def stream(self, *, catch_up: bool = True) -> AsyncIterator[str | ReplyEnd]:
        """Each piece of text as the engine made it, then the end.

        With ``catch_up`` (a reader that arrives late: a re-attach), what was made before it
        came is one piece. The reader that asked for the reply takes ``catch_up=False``: a fast
        engine may have made several pieces before it reads, and it gets them one by one.
        """
        sent = 0

        def ready() -> bool:
            return len(self._pieces) > sent or self.finished

        caught_up = not catch_up
        while True:
            async with self._changed:
                await self._changed.wait_for(ready)
                pieces = self._pieces[sent:]
                sent = len(self._pieces)
                end = self.end
            if not caught_up and pieces:
                # A reader arriving late (re-attach) gets what it missed as one piece; from
                # then on, piece by piece, as the engine made them (an OpenAI client expects
                # token-sized deltas).
                yield "".join(pieces)
            else:
                for piece in pieces:
                    yield piece
            caught_up = True
            if end is not None:
                yield end
                return

    # -- the task --------------------------------------------------------------------------
    async def _run(self) -> None:
        first_at: float | None = None
        last: Chunk | None = None
        error: ChatbotError | None = None
        metrics = self._runner.metrics
        self._started = True
        try:
            if self._stop_reason is not None:  # stopped before this task first ran
                raise asyncio.CancelledError
            limits = self._runner.limits
            await self._runner.wait_loaded()
            self.loaded_at = time.monotonic()
            if not self._ticket.granted:
                await self._ticket.wait(limits.queue_timeout_s)
            self.granted_at = time.monotonic()
            self._pulse.fire()
            counter = late_chunk_counter.set(metrics.tokens_after_cancel.inc)
            try:
                async with asyncio.timeout(limits.request_timeout_s):
                    stream = self._generate()
                    try:
                        previous = time.monotonic()
                        async for chunk in stream:
                            last = chunk
                            if not self._accepted.is_set():
                                self.prompt_tokens = chunk.usage.prompt_tokens or None
                                self._accepted.set()
                                self._pulse.fire()
                            if not chunk.text:
                                continue
                            now = time.monotonic()
                            if first_at is None:
                                first_at = now
                                metrics.time_to_first_token.labels(self.endpoint).observe(
                                    now - self.arrived
                                )
                            else:
                                metrics.inter_token_latency.labels(self.endpoint).observe(
                                    now - previous
                                )
                            previous = now
                            await self._append(chunk.text)
                    finally:
                        await stream.aclose()
            finally:
                late_chunk_counter.reset(counter)
        except asyncio.CancelledError:
            reason = self._stop_reason or StopReason.SHUTDOWN
            self._stop_reason = reason
            metrics.cancelled.labels(reason.value).inc()
            if reason is StopReason.SHUTDOWN:
                error = UnavailableError(
                    "the server is shutting down; the reply was stopped", code="shutting_down"
                )
        except TimeoutError:
            self._stop_reason = StopReason.TIMEOUT
            metrics.cancelled.labels(StopReason.TIMEOUT.value).inc()
            error = RequestTimeoutError(
                f"the reply ran past the limit of {self._runner.limits.request_timeout_s:g} s "
                "(CHATBOT_REQUEST_TIMEOUT_S) and was stopped",
                code="request_timeout",
            )
        except ChatbotError as exc:
            error = exc
        except Exception:
            logger.exception("a reply failed (%s)", self.endpoint)
            error = GenerationError("the model failed while generating", code="generation_error")
        finally:
            self._ticket.release()
            if self.granted_at is not None:
                self._runner.times.add(time.monotonic() - self.granted_at, len(self._pieces))
        self._ending = True
        await self._finish(last, first_at, error)

    def _generate(self) -> AsyncGenerator[Chunk, None]:
        engine = self._runner.engine
        if self._tools is not None:
            if not takes_native_tools(engine):  # the caller asked it first: a bug, not input
                raise TypeError(f"{type(engine).__name__} does not take tools natively")
            return engine.generate(
                self._messages, self.params, json_schema=self._json_schema, tools=self._tools
            )
        if self._json_schema is None:  # engines need not know structured output to serve chat
            return engine.generate(self._messages, self.params)
        return engine.generate(self._messages, self.params, json_schema=self._json_schema)

    async def _append(self, text: str) -> None:
        async with self._changed:
            self._pieces.append(text)
            self._changed.notify_all()
        if len(self._pieces) == 1:
            self._pulse.fire()

    def _end_of(
        self, last: Chunk | None, first_at: float | None, error: ChatbotError | None
    ) -> ReplyEnd:
        reason = self._stop_reason
        if error is not None and reason is None:
            status, finish = MessageStatus.ERROR, FinishReason.ERROR
        elif reason is StopReason.SHUTDOWN:
            status, finish = MessageStatus.INTERRUPTED, FinishReason.CANCELLED
        elif reason is not None:
            status, finish = MessageStatus.STOPPED, FinishReason.CANCELLED
        elif last is None or last.finish_reason is None:
            status, finish = MessageStatus.ERROR, FinishReason.ERROR
            error = GenerationError("the engine ended the reply without finishing it")
        else:
            status, finish = MessageStatus.COMPLETE, last.finish_reason
        usage = last.usage if last is not None else None
        stats = ReplyStats(
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            time_to_first_token_s=round(first_at - self.arrived, 4) if first_at else None,
            duration_s=round(time.monotonic() - self.arrived, 4),
            dropped_messages=last.dropped_messages if last else 0,
            finish_reason=finish,
            loading_s=round(self.loaded_at - self.arrived, 4) if self.loaded_at else None,
            queued_s=(
                round(self.granted_at - (self.loaded_at or self.arrived), 4)
                if self.granted_at
                else None
            ),
        )
        return ReplyEnd(status, stats, error)

    async def _finish(
        self, last: Chunk | None, first_at: float | None, error: ChatbotError | None
    ) -> None:
        end = self._end_of(last, first_at, error)
        metrics = self._runner.metrics
        metrics.tokens_generated.labels(self.endpoint).inc(end.stats.completion_tokens)
        metrics.prompt_tokens.labels(self.endpoint).inc(end.stats.prompt_tokens)
        if self._sink is not None and self._stop_reason is not StopReason.SHUTDOWN:
            try:
                await self._sink.finish(self.text(), end)
            except ChatbotError as exc:
                logger.warning("could not store the end of a reply: %s", exc.message)
                end = ReplyEnd(MessageStatus.ERROR, end.stats, exc)
        async with self._changed:
            self.end = end
            self._changed.notify_all()
        self._pulse.fire()
        if self._sink is not None and self._stop_reason is StopReason.SHUTDOWN:
            # Shutting down: readers hear it at once (the process may be gone before a slow
            # database answers); the text is stored after, as a crash would leave it.
            with contextlib.suppress(ChatbotError):
                await self._sink.finish(self.text(), end)


class ReplyRunner:
    """Starts replies on one engine under one admission control and one set of metrics."""

    def __init__(
        self,
        engine: Engine,
        admission: AdmissionControl,
        metrics: Metrics,
        limits: ReplyLimits,
    ) -> None:
        self.engine = engine
        self.admission = admission
        self.metrics = metrics
        self.limits = limits
        self._replies: set[Reply] = set()
        self._closed = False
        self.times = ReplyTimes()
        self._loading: asyncio.Task[None] | None = None

    # -- the model loading in the background (the monolith starts before it is ready) ----------
    def load_in_background(self, work: Awaitable[None]) -> None:
        """Replies wait (phase ``loading``) until ``work`` ends; its failure fails them."""
        self._loading = asyncio.ensure_future(work)
        self._loading.add_done_callback(self._loaded)

    def _loaded(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("the model failed to load", exc_info=task.exception())
        for reply in list(self._replies):
            reply._pulse.fire()

    @property
    def loaded(self) -> bool:
        """Whether the model is ready; True when it was loaded before this runner started."""
        task = self._loading
        return task is None or (task.done() and not task.cancelled() and not task.exception())

    @property
    def load_error(self) -> str | None:
        task = self._loading
        if task is None or not task.done():
            return None
        if task.cancelled():
            return "loading was cancelled"
        exc = task.exception()
        if exc is None:
            return None
        return exc.message if isinstance(exc, ChatbotError) else type(exc).__name__

    async def wait_loaded(self) -> None:
        task = self._loading
        if task is None:
            return
        with contextlib.suppress(BaseException):
            await asyncio.shield(task)
        error = self.load_error
        if error is not None:
            raise UnavailableError(f"the model failed to load: {error}", code="not_ready")

    # -- how busy it is ------------------------------------------------------------------
    def estimate_start_s(self, position: int) -> float | None:
        """Seconds until the reply at queue ``position`` starts (see chatbot.service.waiting)."""
        now = time.monotonic()
        speed = self.times.tokens_per_s()
        running = [  # replies holding a place; one that has not begun yet has run 0 s
            Running(
                now - (reply.granted_at or now),
                None if speed is None else reply.tokens_left() / speed,
            )
            for reply in self._replies
            if reply._ticket.granted and not reply.finished
        ]
        return estimate_start_s(
            position, self.admission.max_concurrent, running, self.times.mean_s()
        )

    def status(self) -> RunnerStatus:
        admission = self.admission
        busy = admission.in_flight >= admission.max_concurrent
        mean = self.times.mean_s()
        return RunnerStatus(
            loaded=self.loaded,
            running=admission.in_flight,
            queued=admission.queued,
            max_concurrent=admission.max_concurrent,
            max_queued=admission.max_queued,
            mean_reply_s=None if mean is None else round(mean, 2),
            estimate_s=self.estimate_start_s(admission.queued + 1) if busy else 0.0,
            load_error=self.load_error,
        )

    def reserve(self) -> Ticket:
        """A place or a queue slot now; OverloadedError (counted) when full."""
        if self._closed:
            self.metrics.rejected.labels("shutting_down").inc()
            raise UnavailableError("the server is shutting down", code="shutting_down")
        try:
            return self.admission.reserve()
        except OverloadedError as exc:
            self.metrics.rejected.labels("overloaded").inc()
            # Retry-After from the measured estimate when there is one: when a place or a
            # queue slot is expected to free, within [1, 60] s.
            estimate = self.estimate_start_s(1)
            if estimate is not None:
                exc.retry_after_s = max(1, min(60, math.ceil(estimate)))
            raise
        except ChatbotError:
            self.metrics.rejected.labels("overloaded").inc()
            raise

    def start(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        endpoint: str,
        ticket: Ticket | None = None,
        sink: ReplySink | None = None,
        json_schema: Mapping[str, Any] | None = None,
        tools: ToolRequest | None = None,
    ) -> Reply:
        """Run one reply; reserve its place first unless the caller already did.

        With ``json_schema`` the reply is constrained to JSON that validates against it;
        ``tools`` go to an engine that takes them natively (:func:`takes_native_tools`).
        """
        reply = Reply(
            self,
            messages,
            params,
            endpoint=endpoint,
            ticket=ticket if ticket is not None else self.reserve(),
            sink=sink,
            json_schema=json_schema,
            tools=tools,
        )
        self._replies.add(reply)
        reply._task.add_done_callback(lambda _: self._replies.discard(reply))
        return reply

    @property
    def running(self) -> int:
        return len(self._replies)

    def stop_all(self, reason: StopReason) -> None:
        """Stop every running reply now (a drain's grace is over); they store their ends."""
        for reply in list(self._replies):
            reply.stop(reason)

    async def close(self, wait_s: float = 10.0) -> None:
        """Stop every reply (``interrupted``, text kept) and wait for their ends to be stored."""
        self._closed = True
        replies = list(self._replies)
        for reply in replies:
            reply.stop(StopReason.SHUTDOWN)
        if replies:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await asyncio.gather(*(r.wait_finished() for r in replies))
