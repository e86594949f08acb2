"""Replies owned by the service: one thread generates, any number of readers follow.

A :class:`ReplyTask` consumes the engine's :class:`~chatbot.engine.base.Generation` in its own
thread and keeps the text in a :class:`ReplyBroadcast`. Readers (the request that started the
reply, and anyone who re-attaches later) subscribe to the broadcast; a reader going away
stops nothing. Only :meth:`ReplyTask.request_stop` (or closing the service) ends a reply early.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from chatbot.domain import (
    FinishReason,
    GenerationParams,
    Message,
    MessageStatus,
    ReplyEvent,
    ReplyEventType,
    ReplyStats,
)
from chatbot.engine.base import Engine, Generation
from chatbot.errors import ChatbotError, UnavailableError
from chatbot.store import ConversationStore, ReplyStart

if TYPE_CHECKING:
    from chatbot.service.admission import Ticket

logger = logging.getLogger(__name__)

QUEUE_POLL_S = 0.1
FINISH_RETRIES = 3


class ReplyBroadcast:
    """The text of one reply so far and its final event, shared by the writer and readers."""

    def __init__(self, start: ReplyEvent) -> None:
        self.start = start
        self._cond = threading.Condition()
        self._chunks: list[str] = []
        self._final: ReplyEvent | None = None

    def append(self, chunk: str) -> None:
        with self._cond:
            self._chunks.append(chunk)
            self._cond.notify_all()

    def finish(self, event: ReplyEvent) -> None:
        with self._cond:
            self._final = event
            self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "".join(self._chunks)

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._final is not None

    def wait_finished(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._final is not None, timeout)

    def subscribe(self) -> Iterator[ReplyEvent]:
        """Start, then the text so far as one delta, then each new piece, then done or error."""
        yield self.start
        sent = 0
        while True:
            with self._cond:
                while len(self._chunks) == sent and self._final is None:
                    self._cond.wait()
                pending = "".join(self._chunks[sent:])
                sent = len(self._chunks)
                final = self._final
            if pending:
                yield ReplyEvent(
                    type=ReplyEventType.DELTA,
                    conversation_id=self.start.conversation_id,
                    delta=pending,
                )
            if final is not None:
                yield final
                return


class ReplyTask:
    """Generates one reply in a background thread and stores its progress and its end."""

    def __init__(
        self,
        *,
        engine: Engine,
        store: ConversationStore,
        start: ReplyStart,
        params: GenerationParams,
        ticket: Ticket | None,
        queue_timeout_s: float,
        on_finished: Callable[[ReplyTask], None],
    ) -> None:
        assert start.conversation.id is not None
        self.conversation_id = start.conversation.id
        self.placeholder = start.placeholder
        self.broadcast = ReplyBroadcast(
            ReplyEvent(
                type=ReplyEventType.START,
                conversation_id=self.conversation_id,
                message=start.placeholder,
                user_message=start.user_message,
            )
        )
        self._engine = engine
        self._store = store
        self._prompt = start.conversation.prompt_messages()
        self._params = params
        self._ticket = ticket
        self._queue_timeout_s = queue_timeout_s
        self._on_finished = on_finished
        self._accepted_at = time.monotonic()
        self._stop = threading.Event()
        self._aborted = False
        self._lock = threading.Lock()
        self._generation: Generation | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"reply-{self.conversation_id[:8]}", daemon=True
        )

    def begin(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Cancel the generation (the model stops within a token); the reply ends ``stopped``."""
        self._stop.set()
        with self._lock:
            generation = self._generation
        if generation is not None:
            generation.cancel()

    def abort(self) -> None:
        """Stop because the service closes: the reply ends ``interrupted``."""
        self._aborted = True
        self.request_stop()

    def wait_finished(self, timeout: float | None = None) -> bool:
        return self.broadcast.wait_finished(timeout)

    # -- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        generation: Generation | None = None
        first_token_at: float | None = None
        error: ChatbotError | None = None
        try:
            self._wait_for_place()
            if not self._stop.is_set():
                generation = self._engine.start(self._prompt, self._params)
                with self._lock:
                    self._generation = generation
                if self._stop.is_set():
                    generation.cancel()
                for chunk in generation:
                    if first_token_at is None:
                        first_token_at = time.monotonic()
                    self.broadcast.append(chunk)
        except ChatbotError as exc:
            error = exc
        except Exception:
            logger.exception("reply in conversation %s failed", self.conversation_id)
            error = ChatbotError("the model failed while generating", code="generation_error")
        finally:
            if self._ticket is not None:
                self._ticket.release()
        self._finish(generation, first_token_at, error)

    def _wait_for_place(self) -> None:
        """Wait in the admission queue, but leave it at once when stopped."""
        ticket = self._ticket
        if ticket is None:
            return
        deadline = time.monotonic() + self._queue_timeout_s
        while not ticket.granted and not self._stop.is_set():
            if time.monotonic() >= deadline:
                ticket.wait(0)  # raises UnavailableError and frees the slot
            self._stop.wait(QUEUE_POLL_S)

    def _finish(
        self,
        generation: Generation | None,
        first_token_at: float | None,
        error: ChatbotError | None,
    ) -> None:
        outcome = generation.outcome if generation is not None else None
        if error is not None:
            status = MessageStatus.ERROR
            reason = FinishReason.ERROR
        elif outcome is None or outcome.finish_reason is FinishReason.CANCELLED:
            status = MessageStatus.INTERRUPTED if self._aborted else MessageStatus.STOPPED
            reason = FinishReason.CANCELLED
        else:
            status, reason = MessageStatus.COMPLETE, outcome.finish_reason
        ended = time.monotonic()
        stats = ReplyStats(
            prompt_tokens=outcome.usage.prompt_tokens
            if outcome
            else (generation.prompt_tokens if generation else 0),
            completion_tokens=outcome.usage.completion_tokens if outcome else 0,
            time_to_first_token_s=(
                round(first_token_at - self._accepted_at, 4) if first_token_at else None
            ),
            duration_s=round(ended - self._accepted_at, 4),
            dropped_messages=(
                outcome.dropped_messages
                if outcome
                else (generation.dropped_messages if generation else 0)
            ),
            finish_reason=reason,
        )
        final = self._store_final(self.broadcast.text(), status, stats)
        self._on_finished(self)
        if error is None:
            event = ReplyEvent(
                type=ReplyEventType.DONE, conversation_id=self.conversation_id, message=final
            )
        else:
            event = ReplyEvent(
                type=ReplyEventType.ERROR,
                conversation_id=self.conversation_id,
                message=final,
                error=error.message,
                error_code=error.code or error.error_type,
            )
        self.broadcast.finish(event)

    def _store_final(self, text: str, status: MessageStatus, stats: ReplyStats) -> Message:
        for attempt in range(FINISH_RETRIES):
            try:
                return self._store.finish_reply(
                    self.placeholder, content=text, status=status, stats=stats
                )
            except UnavailableError:
                logger.warning("could not store the end of a reply (attempt %d)", attempt + 1)
                time.sleep(0.5 * (attempt + 1))
        # The row stays ``streaming`` with its last saved text; once its heartbeat is stale any
        # replica (or the next start) marks it ``interrupted``.
        return self.placeholder.model_copy(
            update={"content": text, "status": status, "stats": stats}
        )


def follow_stored_reply(
    store: ConversationStore, conversation_id: str, message: Message, poll_s: float
) -> Iterator[ReplyEvent]:
    """Follow a reply that another replica writes, by polling its row until it ends.

    The text arrives in the steps the writer saves it (about twice a second). A writer that dies
    stops its heartbeat; the row is then marked ``interrupted`` and the stream ends with it.
    """
    yield ReplyEvent(
        type=ReplyEventType.START,
        conversation_id=conversation_id,
        message=message.model_copy(update={"content": ""}),
    )
    sent = 0
    current: Message | None = message
    while current is not None:
        if len(current.content) > sent:
            yield ReplyEvent(
                type=ReplyEventType.DELTA,
                conversation_id=conversation_id,
                delta=current.content[sent:],
            )
            sent = len(current.content)
        if current.status is not MessageStatus.STREAMING:
            if current.status is MessageStatus.ERROR:
                yield ReplyEvent(
                    type=ReplyEventType.ERROR,
                    conversation_id=conversation_id,
                    message=current,
                    error="the reply failed",
                    error_code="generation_error",
                )
            else:
                yield ReplyEvent(
                    type=ReplyEventType.DONE, conversation_id=conversation_id, message=current
                )
            return
        time.sleep(poll_s)
        assert message.id is not None
        current = store.reply_message(message.id)
    yield ReplyEvent(
        type=ReplyEventType.ERROR,
        conversation_id=conversation_id,
        error="the reply was deleted with its conversation",
        error_code="not_found",
    )
