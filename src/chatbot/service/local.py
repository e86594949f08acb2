"""ChatService: the application that both the UI (monolith) and the API (backend) call.

It ties the engine to the store: conversations are created, listed, renamed and deleted in the
store; a message is stored, then answered by a :class:`~chatbot.replies.ReplyTask` that the
service owns, so a reply goes on when the client that asked for it goes away, and any client
can :meth:`ChatService.attach` to it again.

Replicas: several services (processes) may share one PostgreSQL database. At most one reply
runs per conversation across all of them (a unique partial index on streaming rows); a service
attaches to a reply that another replica writes by polling its row, and stops it through a flag
on that row that the owner reads within half a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from chatbot.config import EngineSettings, LimitSettings, StoreSettings
from chatbot.domain import (
    Conversation,
    ConversationSummary,
    ExportFormat,
    GenerationParams,
    ReplyEvent,
    export,
    parse,
)
from chatbot.engine.base import Engine
from chatbot.errors import ChatbotError, ConflictError, InvalidRequestError, UnavailableError
from chatbot.service.runner import ReplyTask, follow_stored_reply
from chatbot.store import ConversationStore, ReplyStart
from chatbot.store.models import MAX_TITLE_CHARS

if TYPE_CHECKING:
    from chatbot.service.admission import AdmissionControl

logger = logging.getLogger(__name__)

MAX_LIST_LIMIT = 200
# How often partial text and heartbeats of running replies are saved.
SAVE_INTERVAL_S = 0.5
# How often a reader following another replica's reply looks at its row.
FOLLOW_POLL_S = 0.25
STOP_WAIT_S = 10.0
CLOSE_WAIT_S = 10.0
DEFAULT_QUEUE_TIMEOUT_S = 120.0


class ChatService:
    """Conversations + engine + store; implements :class:`chatbot.service.protocol.ChatServiceProtocol`."""

    def __init__(
        self,
        engine: Engine,
        store: ConversationStore,
        limits: LimitSettings,
        *,
        admission: AdmissionControl | None = None,
    ) -> None:
        self._engine = engine
        self._store = store
        self._limits = limits
        self._admission = admission
        self._owns_engine = False
        self._lock = threading.Lock()
        # Conversation id -> its running reply; None while a reply is being set up.
        self._replies: dict[str, ReplyTask | None] = {}
        self._closed = threading.Event()
        self._saver = threading.Thread(target=self._save_progress, name="reply-saver", daemon=True)
        self._saver.start()

    @classmethod
    def open(
        cls,
        engine_settings: EngineSettings,
        store_settings: StoreSettings,
        limits: LimitSettings,
        *,
        engine: Engine | None = None,
        admission: AdmissionControl | None = None,
    ) -> ChatService:
        """Open the store (migrations run here) and build the engine unless one is given.

        The engine is not loaded here; its first use (or the caller's warm-up) loads it.
        """
        store = ConversationStore.open(store_settings.resolved_database_url())
        owns_engine = engine is None
        if engine is None:
            from chatbot.engine.factory import create_engine

            try:
                engine = create_engine(engine_settings)
            except BaseException:
                store.close()
                raise
        service = cls(engine, store, limits, admission=admission)
        service._owns_engine = owns_engine
        return service

    @property
    def model_id(self) -> str:
        return self._engine.model_id

    @property
    def deployment(self) -> str:
        return "monolith"

    @property
    def store(self) -> ConversationStore:
        return self._store

    def close(self) -> None:
        """End running replies (``interrupted``, text kept), then close the store and engine."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            tasks = [t for t in self._replies.values() if t is not None]
        for task in tasks:
            task.abort()
        for task in tasks:
            task.wait_finished(CLOSE_WAIT_S)
        self._saver.join(timeout=5)
        self._store.close()
        if self._owns_engine:
            self._engine.close()

    # -- conversations -----------------------------------------------------------------
    def create_conversation(
        self,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
    ) -> Conversation:
        return self._store.create_conversation(
            title=self._valid_title(title),
            system_prompt=self._valid_system_prompt(system_prompt),
            params=self._capped(params),
        )

    def list_conversations(self, *, limit: int = 50, offset: int = 0) -> list[ConversationSummary]:
        """Newest activity first (a new message counts; a rename does not)."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidRequestError(
                f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}", param="limit"
            )
        if offset < 0:
            raise InvalidRequestError(f"offset must not be negative, got {offset}", param="offset")
        return self._store.list_conversations(limit=limit, offset=offset)

    def get_conversation(self, conversation_id: str) -> Conversation:
        """All messages, oldest first. A reply in progress shows its last saved text (at most
        about half a second old); :meth:`attach` gives the live text."""
        return self._store.get_conversation(conversation_id)

    def update_conversation(
        self,
        conversation_id: str,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
    ) -> Conversation:
        """A title given here replaces the automatic one for good."""
        return self._store.update_conversation(
            conversation_id,
            title=self._valid_title(title),
            system_prompt=self._valid_system_prompt(system_prompt),
            params=self._capped(params),
        )

    def delete_conversation(self, conversation_id: str) -> None:
        """Stops a reply running here first; one on another replica ends with nowhere to go."""
        self._stop_local(conversation_id)
        self._store.delete_conversation(conversation_id)

    def clear_conversation(self, conversation_id: str) -> Conversation:
        self._stop_local(conversation_id)
        return self._store.clear_conversation(conversation_id)

    # -- replies -----------------------------------------------------------------------
    def send_message(self, conversation_id: str, content: str) -> Iterator[ReplyEvent]:
        """Store the user message and start the reply; return the stream of its events.

        The work happens in this call, not on the first ``next()``: when it returns, the user
        message and an assistant placeholder (status ``streaming``) are committed, and errors
        (InvalidRequestError, NotFoundError, ConflictError, OverloadedError) come out here,
        before any event. Reading the stream is optional: the reply runs to its end anyway.
        """
        text = self._valid_content(content)
        return self._start_reply(
            conversation_id,
            lambda: self._store.begin_reply(conversation_id, user_content=text),
        )

    def regenerate(self, conversation_id: str) -> Iterator[ReplyEvent]:
        """Delete the last assistant reply and answer the last user message again."""
        return self._start_reply(
            conversation_id, lambda: self._store.begin_reply(conversation_id, regenerate=True)
        )

    def edit_message(
        self, conversation_id: str, message_id: str, content: str
    ) -> Iterator[ReplyEvent]:
        """Replace an earlier user message and answer again from there.

        Every message after the edited one is deleted (no branches are kept): the conversation
        reads as if the user had written the new text in the first place.
        """
        text = self._valid_content(content)
        return self._start_reply(
            conversation_id,
            lambda: self._store.begin_reply(
                conversation_id, user_content=text, edit_message_id=message_id
            ),
        )

    def attach(self, conversation_id: str) -> Iterator[ReplyEvent]:
        """Re-attach to the reply in progress: start, the text so far as one delta, the rest.

        Yields nothing when no reply runs. A reply that another replica writes is followed by
        polling its stored row (text in steps of about half a second) until it ends.
        NotFoundError (at once) for an unknown conversation.
        """
        with self._lock:
            task = self._replies.get(conversation_id)
        if task is not None and not task.broadcast.finished:
            return task.broadcast.subscribe()
        message = self._store.live_reply(conversation_id)
        if message is None:
            return iter(())
        return follow_stored_reply(self._store, conversation_id, message, FOLLOW_POLL_S)

    def stop(self, conversation_id: str) -> bool:
        """Stop the reply in progress; False when there was none.

        A reply running here is cancelled (the model stops within a token) and this returns
        once it is stored as ``stopped``; one on another replica is flagged, and its owner
        stops it within about half a second.
        """
        if self._stop_local(conversation_id):
            return True
        return self._store.request_stop(conversation_id)

    # -- files -------------------------------------------------------------------------
    def export_conversation(self, conversation_id: str, fmt: ExportFormat) -> str:
        return export(self._store.get_conversation(conversation_id), fmt)

    def import_conversation(self, text: str, fmt: ExportFormat) -> Conversation:
        """A new conversation from an exported file (CSV, JSON or OpenAI messages)."""
        parsed = parse(text, fmt)
        if len(parsed.messages) > self._limits.max_messages:
            raise InvalidRequestError(
                f"the file has {len(parsed.messages)} messages; the limit is "
                f"{self._limits.max_messages}",
                param="content",
            )
        for number, message in enumerate(parsed.messages, start=1):
            if len(message.content) > self._limits.max_message_chars:
                raise InvalidRequestError(
                    f"message {number} has {len(message.content)} characters; the limit is "
                    f"{self._limits.max_message_chars}",
                    param="content",
                )
        if parsed.title.strip() == "" or len(parsed.title) > MAX_TITLE_CHARS:
            parsed = parsed.model_copy(update={"title": parsed.title.strip()[:MAX_TITLE_CHARS]})
        return self._store.import_conversation(
            parsed.model_copy(
                update={
                    "system_prompt": self._valid_system_prompt(parsed.system_prompt),
                    "params": self._capped(parsed.params),
                }
            )
        )

    # -- internals ---------------------------------------------------------------------
    def _start_reply(
        self, conversation_id: str, begin: Callable[[], ReplyStart]
    ) -> Iterator[ReplyEvent]:
        with self._lock:
            if self._closed.is_set():
                raise UnavailableError("the service is shutting down", code="shutting_down")
            if conversation_id in self._replies:
                raise ConflictError(
                    "a reply is already being written in this conversation; wait or stop it",
                    param="conversation_id",
                    code="reply_in_progress",
                )
            self._replies[conversation_id] = None
        try:
            # The ticket comes first so that a full server refuses before anything is stored.
            ticket = self._admission.reserve() if self._admission is not None else None
            try:
                start = begin()
                task = ReplyTask(
                    engine=self._engine,
                    store=self._store,
                    start=start,
                    params=self._cap(start.conversation.params),
                    ticket=ticket,
                    queue_timeout_s=(
                        self._admission.queue_timeout_s
                        if self._admission is not None
                        else DEFAULT_QUEUE_TIMEOUT_S
                    ),
                    on_finished=self._forget,
                )
            except BaseException:
                if ticket is not None:
                    ticket.release()
                raise
        except BaseException:
            with self._lock:
                self._replies.pop(conversation_id, None)
            raise
        with self._lock:
            self._replies[conversation_id] = task
        task.begin()
        return task.broadcast.subscribe()

    def _forget(self, task: ReplyTask) -> None:
        """Called by a task once its end is stored, before readers see ``done``."""
        with self._lock:
            if self._replies.get(task.conversation_id) is task:
                del self._replies[task.conversation_id]

    def _stop_local(self, conversation_id: str) -> bool:
        with self._lock:
            task = self._replies.get(conversation_id)
        if task is None:
            return False
        task.request_stop()
        if not task.wait_finished(STOP_WAIT_S):
            logger.warning("reply in %s did not stop within %.0fs", conversation_id, STOP_WAIT_S)
        return True

    def _save_progress(self) -> None:
        """Save partial text and heartbeats twice a second; obey stop flags from replicas."""
        while not self._closed.wait(SAVE_INTERVAL_S):
            with self._lock:
                tasks = [t for t in self._replies.values() if t is not None]
            running = {t.placeholder.id: t for t in tasks if t.placeholder.id is not None}
            if not running:
                continue
            try:
                flagged = self._store.save_progress(
                    {mid: t.broadcast.text() for mid, t in running.items()}
                )
            except ChatbotError as exc:
                logger.warning("could not save reply progress: %s", exc.message)
                continue
            for message_id in flagged:
                running[message_id].request_stop()

    def _valid_content(self, content: str) -> str:
        if not isinstance(content, str) or not content.strip():
            raise InvalidRequestError("content must be a non-empty string", param="content")
        if len(content) > self._limits.max_message_chars:
            raise InvalidRequestError(
                f"content has {len(content)} characters; the limit is "
                f"{self._limits.max_message_chars}",
                param="content",
            )
        return content

    def _valid_title(self, title: str | None) -> str | None:
        if title is None:
            return None
        title = title.strip()
        if not title:
            raise InvalidRequestError("title must not be empty", param="title")
        if len(title) > MAX_TITLE_CHARS:
            raise InvalidRequestError(
                f"title has {len(title)} characters; the limit is {MAX_TITLE_CHARS}",
                param="title",
            )
        return title

    def _valid_system_prompt(self, system_prompt: str | None) -> str | None:
        if system_prompt is not None and len(system_prompt) > self._limits.max_message_chars:
            raise InvalidRequestError(
                f"system_prompt has {len(system_prompt)} characters; the limit is "
                f"{self._limits.max_message_chars}",
                param="system_prompt",
            )
        return system_prompt

    def _capped(self, params: GenerationParams | None) -> GenerationParams | None:
        """Reply length above the server's cap is lowered to the cap, not refused."""
        return None if params is None else self._cap(params)

    def _cap(self, params: GenerationParams) -> GenerationParams:
        if params.max_new_tokens <= self._limits.max_tokens_cap:
            return params
        return params.model_copy(update={"max_new_tokens": self._limits.max_tokens_cap})
