"""ChatService: conversations + engine + store, async; the application both deployments run.

The backend's routes await it on uvicorn's loop; the monolith's UI reaches the same object
through :class:`chatbot.service.portal.PortalChatService`, so admission, limits and metrics
are the same in both deployments.

A message is stored, then answered by a :class:`~chatbot.service.runner.Reply` with the store
as its sink, so the reply goes on when the client that asked for it goes away and any client
can :meth:`ChatService.attach` to it again.

Users: a service acts for one user (:meth:`ChatService.for_user`; the local user unless bound),
and every operation is scoped to that user's conversations, down to the SQL of the store.
Another user's conversation is a NotFoundError exactly like a missing one, running reply
included: the live replies are keyed by owner and conversation, so a view never finds, follows,
or stops a reply of another user's, here or on another replica.

Replicas: several services may share one PostgreSQL database. At most one reply runs per
conversation across all of them (a unique partial index on streaming rows); a service follows
a reply that another replica writes by reading its row (the writer saves it twice a second),
and stops it through a flag on that row that the writer reads at the same pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from chatbot.config import EngineSettings, LimitSettings, StoreSettings
from chatbot.domain import (
    Conversation,
    ConversationPage,
    ConversationSummary,
    ExportFormat,
    GenerationParams,
    Message,
    MessageStatus,
    ReplyEvent,
    ReplyEventType,
    export,
    parse,
)
from chatbot.domain.jsontext import encodable
from chatbot.domain.users import LOCAL_USER, User
from chatbot.engine.base import Engine
from chatbot.errors import (
    ChatbotError,
    ConflictError,
    InvalidRequestError,
    UnavailableError,
    event_fields,
)
from chatbot.service import cursor
from chatbot.service.admission import AdmissionControl
from chatbot.service.metrics import Metrics
from chatbot.service.params import (
    ServiceLimits,
    conversation_params,
    resolve_params,
    stored_params,
)
from chatbot.service.runner import Reply, ReplyEnd, ReplyLimits, ReplyRunner, StopReason
from chatbot.service.waiting import RunnerStatus
from chatbot.store import ConversationStore, ReplyStart
from chatbot.store.models import MAX_TITLE_CHARS
from chatbot.store.repository import DEFAULT_TITLE

logger = logging.getLogger(__name__)

T = TypeVar("T")

ENDPOINT = "conversations"
MAX_LIST_LIMIT = 200
# How often partial text and heartbeats of running replies are saved.
SAVE_INTERVAL_S = 0.5
# How often a reader following another replica's reply looks at its row.
FOLLOW_POLL_S = 0.25
STOP_WAIT_S = 10.0
FINISH_RETRIES = 3


@dataclass
class _LiveReply:
    start: ReplyStart
    reply: Reply
    final: Message | None = None


# A running reply's key: (owner id, conversation id). Keyed by owner, a view of one user's never
# finds another user's reply, so it cannot attach to it, stop it, or learn that it runs.
_ReplyKey = tuple[str, str]


@dataclass
class _Shared:
    """What a service and all its per-user views share: their running replies and lifecycle."""

    # Running replies; None while one is being set up.
    replies: dict[_ReplyKey, _LiveReply | None] = field(default_factory=dict)
    saver: asyncio.Task[None] | None = None
    closed: bool = False


class _StoreSink:
    """Stores a reply's end (retrying a database hiccup) before its readers see it."""

    def __init__(self, service: ChatService, key: _ReplyKey, start: ReplyStart) -> None:
        self._service = service
        self._key = key
        self._start = start
        self.live: _LiveReply | None = None

    async def finish(self, text: str, end: ReplyEnd) -> None:
        store = self._service.store
        try:
            for attempt in range(FINISH_RETRIES):
                try:
                    final = await asyncio.to_thread(
                        store.finish_reply,
                        self._start.placeholder,
                        content=text,
                        status=end.status,
                        stats=end.stats,
                    )
                    if self.live is not None:
                        self.live.final = final
                    return
                except UnavailableError as exc:
                    if attempt == FINISH_RETRIES - 1:
                        raise UnavailableError(
                            "the reply was written but could not be saved (the database is "
                            "unavailable); it is not in the conversation: send the message "
                            "again later",
                            code="reply_not_saved",
                        ) from exc
                    logger.warning("could not store the end of a reply (attempt %d)", attempt + 1)
                    await asyncio.sleep(0.5 * (attempt + 1))
        finally:
            # Before readers see the end: a send right after ``done`` must not get a 409.
            self._service._forget(self._key, self.live)


class ChatService:
    """Implements :class:`chatbot.service.protocol.AsyncChatService`; all methods are async.

    Acts for one user: the local user, or the one :meth:`for_user` binds a view to.
    """

    def __init__(
        self,
        engine: Engine,
        store: ConversationStore,
        limits: LimitSettings,
        *,
        runner: ReplyRunner | None = None,
    ) -> None:
        self._engine = engine
        self._user = LOCAL_USER
        self._store = store.for_user(LOCAL_USER.id)
        self._limits = limits
        self.runner = runner or ReplyRunner(
            engine,
            AdmissionControl(max_concurrent=8, max_queued=32, queue_timeout_s=120.0),
            Metrics(),
            ReplyLimits(),
        )
        self._owns_engine = False
        self._shared = _Shared()
        self._view = False

    def for_user(self, user: User) -> ChatService:
        """A view acting for ``user``: every operation sees only that user's conversations.

        Cheap (no I/O): it shares the store's engine, the runner (admission, metrics), the
        running replies and the lifecycle with this service. Closing a view does nothing;
        close the service it came from.
        """
        view = copy.copy(self)
        view._user = user
        view._store = self._store.for_user(user.id)
        view._view = True
        return view

    @property
    def user(self) -> User:
        """Whom this service acts for."""
        return self._user

    @classmethod
    def open(
        cls,
        engine_settings: EngineSettings,
        store_settings: StoreSettings,
        limits: LimitSettings,
        *,
        engine: Engine | None = None,
        runner: ReplyRunner | None = None,
    ) -> ChatService:
        """Open the store (migrations run here) and build the engine unless one is given."""
        store = ConversationStore.open(store_settings.resolved_database_url())
        owns_engine = engine is None
        if engine is None:
            from chatbot.engine.factory import create_engine

            try:
                engine = create_engine(engine_settings)
            except BaseException:
                store.close()
                raise
        service = cls(engine, store, limits, runner=runner)
        service._owns_engine = owns_engine
        return service

    @property
    def model_id(self) -> str:
        return self._engine.model_id

    @property
    def store(self) -> ConversationStore:
        return self._store

    @property
    def metrics(self) -> Metrics:
        return self.runner.metrics

    def limits(self) -> ServiceLimits:
        return ServiceLimits.of(self._limits)

    def status(self) -> RunnerStatus:
        """Whether the model is loaded, how many replies run and wait, the wait estimate."""
        return self.runner.status()

    async def close(self) -> None:
        """End running replies (``interrupted``, text kept), then close the store and engine.

        Of every user: a view's close does nothing, the service's closes all.
        """
        if self._view or self._shared.closed:
            return
        self._shared.closed = True
        running = [live.reply for live in self._shared.replies.values() if live is not None]
        for reply in running:
            reply.stop(StopReason.SHUTDOWN)
        for reply in running:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_WAIT_S):
                    await reply.wait_finished()
        saver = self._shared.saver
        if saver is not None:
            saver.cancel()
            with contextlib.suppress(BaseException):
                await saver
        await asyncio.to_thread(self._store.close)
        if self._owns_engine:
            await asyncio.to_thread(self._engine.close)

    # -- conversations -----------------------------------------------------------------
    async def create_conversation(
        self,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
    ) -> Conversation:
        return await self._db(
            lambda: self._store.create_conversation(
                title=self._valid_title(title),
                system_prompt=self._valid_system_prompt(system_prompt),
                params=conversation_params(params, self._limits),
            )
        )

    async def list_conversations(
        self, *, limit: int = 50, offset: int = 0
    ) -> list[ConversationSummary]:
        """Newest activity first (a new message counts; a rename does not)."""
        page = await self.page_conversations(limit=limit, offset=offset)
        return list(page.data)

    async def page_conversations(
        self, *, limit: int = 50, after: str | None = None, offset: int = 0
    ) -> ConversationPage:
        """A page of :meth:`list_conversations`, from the cursor ``after`` when given.

        Pass the page's ``next_cursor`` as ``after`` for the next one: conversations added
        while paging are neither repeated nor make a row be skipped, as with ``offset``.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidRequestError(
                f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}", param="limit"
            )
        if offset < 0:
            raise InvalidRequestError(f"offset must not be negative, got {offset}", param="offset")
        before = cursor.decode(after) if after is not None else None
        rows = await self._db(
            lambda: self._store.list_conversations(limit=limit + 1, offset=offset, before=before)
        )
        has_more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = cursor.encode(rows[-1]) if has_more else None
        return ConversationPage(data=tuple(rows), has_more=has_more, next_cursor=next_cursor)

    async def get_conversation(self, conversation_id: str) -> Conversation:
        """All messages, oldest first; a reply in progress shows its last saved text."""
        return await self._db(lambda: self._store.get_conversation(conversation_id))

    async def update_conversation(
        self,
        conversation_id: str,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
    ) -> Conversation:
        """A title given here replaces the automatic one for good."""
        checked = (
            None
            if params is None
            else resolve_params(params, self._limits, param="params.max_new_tokens")
        )
        return await self._db(
            lambda: self._store.update_conversation(
                conversation_id,
                title=self._valid_title(title),
                system_prompt=self._valid_system_prompt(system_prompt),
                params=checked,
            )
        )

    async def delete_conversation(self, conversation_id: str) -> None:
        """Stops a reply running here first; one on another replica ends with nowhere to go."""
        await self._stop_local(conversation_id)
        await self._db(lambda: self._store.delete_conversation(conversation_id))

    async def clear_conversation(self, conversation_id: str) -> Conversation:
        await self._stop_local(conversation_id)
        return await self._db(lambda: self._store.clear_conversation(conversation_id))

    # -- replies -----------------------------------------------------------------------
    async def send_message(self, conversation_id: str, content: str) -> AsyncIterator[ReplyEvent]:
        """Store the user message and start the reply; return the stream of its events.

        When this returns, the user message and an assistant placeholder (``streaming``) are
        committed; refusals (InvalidRequestError, NotFoundError, ConflictError,
        OverloadedError) raise here, before any event. Reading the stream is optional.
        """
        text = self._valid_content(content)
        return await self._start_reply(
            conversation_id, lambda: self._store.begin_reply(conversation_id, user_content=text)
        )

    async def regenerate(self, conversation_id: str) -> AsyncIterator[ReplyEvent]:
        """Answer the last user message again; the earlier reply stays as another version."""
        return await self._start_reply(
            conversation_id, lambda: self._store.begin_reply(conversation_id, regenerate=True)
        )

    async def edit_message(
        self, conversation_id: str, message_id: str, content: str
    ) -> AsyncIterator[ReplyEvent]:
        """Answer a new version of an earlier user message; the old branch stays selectable."""
        text = self._valid_content(content)
        return await self._start_reply(
            conversation_id,
            lambda: self._store.begin_reply(
                conversation_id, user_content=text, edit_message_id=message_id
            ),
        )

    async def attach(self, conversation_id: str) -> AsyncIterator[ReplyEvent] | None:
        """The reply in progress: start, the text so far as one delta, the rest; None if none.

        A reply that another replica writes is followed through its stored row.
        NotFoundError (at once) for an unknown conversation.
        """
        live = self._shared.replies.get(self._key(conversation_id))
        if live is not None and not live.reply.finished:
            return self._events(conversation_id, live, catch_up=True)
        message = await self._db(lambda: self._store.live_reply(conversation_id))
        if message is None:
            return None
        return self._follow_stored(conversation_id, message)

    async def all_messages(self, conversation_id: str) -> list[Message]:
        """Every version of every message (the tree, through ``parent_id``), oldest first."""
        return await self._db(lambda: self._store.all_messages(conversation_id))

    async def select_version(self, conversation_id: str, message_id: str) -> Conversation:
        """Show the branch through ``message_id`` (one of a message's versions).

        ConflictError while a reply runs in this conversation.
        """
        if self._key(conversation_id) in self._shared.replies:
            raise ConflictError(
                "a reply is being written in this conversation; wait or stop it first",
                param="conversation_id",
                code="reply_in_progress",
            )
        return await self._db(lambda: self._store.select_message(conversation_id, message_id))

    async def stop(self, conversation_id: str) -> bool:
        """Stop the reply in progress; False when there was none.

        A reply running here stops within a token and this returns once it is stored as
        ``stopped``; one on another replica is flagged, and its writer stops it within about
        half a second.
        """
        if await self._stop_local(conversation_id):
            return True
        return await self._db(lambda: self._store.request_stop(conversation_id))

    # -- files -------------------------------------------------------------------------
    async def export_conversation(self, conversation_id: str, fmt: ExportFormat) -> str:
        conversation = await self.get_conversation(conversation_id)
        return export(conversation, fmt)

    async def import_conversation(self, text: str, fmt: ExportFormat) -> Conversation:
        """A new conversation from an exported file (CSV, JSON or OpenAI messages).

        The file is held to the rules of the live routes (message count and size, title,
        system prompt, reply length, valid Unicode), so an import stores nothing that a
        client could not have sent.
        """
        parsed = parse(text, fmt)
        if len(parsed.messages) > self._limits.max_messages:
            raise InvalidRequestError(
                f"the file has {len(parsed.messages)} messages; the limit is "
                f"{self._limits.max_messages} (CHATBOT_MAX_MESSAGES)",
                param="content",
            )
        for number, message in enumerate(parsed.messages, start=1):
            if len(message.content) > self._limits.max_message_chars:
                raise InvalidRequestError(
                    f"message {number} has {len(message.content)} characters; the limit is "
                    f"{self._limits.max_message_chars} (CHATBOT_MAX_MESSAGE_CHARS)",
                    param="content",
                    code="message_too_long",
                )
            _check_unicode(message.content, f"message {number}")
        title = None if parsed.title == DEFAULT_TITLE else self._valid_title(parsed.title)
        _check_unicode(title or "", "the title")
        _check_unicode(parsed.system_prompt or "", "the system prompt")
        for stop in parsed.params.stop:
            _check_unicode(stop, "a stop sequence")
        conversation = parsed.model_copy(
            update={
                "title": title or DEFAULT_TITLE,
                "system_prompt": self._valid_system_prompt(parsed.system_prompt),
                "params": resolve_params(
                    parsed.params, self._limits, param="params.max_new_tokens"
                ),
            }
        )
        return await self._db(lambda: self._store.import_conversation(conversation))

    # -- internals ---------------------------------------------------------------------
    async def _db(self, work: Callable[[], T]) -> T:
        """Store calls block (SQLAlchemy's sync engine): off the event loop, in a worker."""
        return await asyncio.to_thread(work)

    async def _start_reply(
        self, conversation_id: str, begin: Callable[[], ReplyStart]
    ) -> AsyncIterator[ReplyEvent]:
        if self._shared.closed:
            raise UnavailableError("the service is shutting down", code="shutting_down")
        key = self._key(conversation_id)
        replies = self._shared.replies
        if key in replies:
            raise ConflictError(
                "a reply is already being written in this conversation; wait or stop it",
                param="conversation_id",
                code="reply_in_progress",
            )
        replies[key] = None
        try:
            # The ticket comes first so that a full server refuses before anything is stored.
            ticket = self.runner.reserve()
            try:
                start = await self._db(begin)
                sink = _StoreSink(self, key, start)
                reply = self.runner.start(
                    start.conversation.prompt_messages(),
                    stored_params(start.conversation.params, self._limits),
                    endpoint=ENDPOINT,
                    ticket=ticket,
                    sink=sink,
                )
            except BaseException:
                ticket.release()
                raise
        except BaseException:
            replies.pop(key, None)
            raise
        live = _LiveReply(start, reply)
        sink.live = live
        replies[key] = live
        self._ensure_saver()
        return self._events(conversation_id, live, catch_up=False)

    def _key(self, conversation_id: str) -> _ReplyKey:
        return (self._user.id, conversation_id)

    def _forget(self, key: _ReplyKey, live: _LiveReply | None) -> None:
        if live is not None and self._shared.replies.get(key) is live:
            del self._shared.replies[key]

    async def _events(
        self, conversation_id: str, live: _LiveReply, *, catch_up: bool
    ) -> AsyncIterator[ReplyEvent]:
        yield ReplyEvent(
            type=ReplyEventType.START,
            conversation_id=conversation_id,
            message=live.start.placeholder,
            user_message=live.start.user_message,
        )
        async for state in live.reply.waiting():
            yield ReplyEvent(
                type=ReplyEventType.WAITING,
                conversation_id=conversation_id,
                phase=state.phase,
                queue_position=state.queue_position,
                eta_s=state.eta_s,
                prompt_tokens=state.prompt_tokens,
            )
        async for item in live.reply.stream(catch_up=catch_up):
            if isinstance(item, str):
                yield ReplyEvent(
                    type=ReplyEventType.DELTA, conversation_id=conversation_id, delta=item
                )
                continue
            final = live.final or live.start.placeholder.model_copy(
                update={"content": live.reply.text(), "status": item.status, "stats": item.stats}
            )
            yield end_event(conversation_id, final, item.error)

    async def _follow_stored(
        self, conversation_id: str, message: Message
    ) -> AsyncIterator[ReplyEvent]:
        """Follow a reply that another replica writes, by reading its row until it ends.

        Polling is inherent here: the writer is another process and the database is all the
        replicas share. The text arrives in the steps the writer saves it (twice a second).
        """
        yield ReplyEvent(
            type=ReplyEventType.START,
            conversation_id=conversation_id,
            message=message.model_copy(update={"content": ""}),
        )
        sent = 0
        current: Message | None = message
        assert message.id is not None
        message_id = message.id
        while current is not None:
            if len(current.content) > sent:
                yield ReplyEvent(
                    type=ReplyEventType.DELTA,
                    conversation_id=conversation_id,
                    delta=current.content[sent:],
                )
                sent = len(current.content)
            if current.status is not MessageStatus.STREAMING:
                failed = current.status is MessageStatus.ERROR
                error = (
                    ChatbotError("the reply failed", code="generation_error") if failed else None
                )
                yield end_event(conversation_id, current, error)
                return
            await asyncio.sleep(FOLLOW_POLL_S)
            current = await self._db(lambda: self._store.reply_message(message_id))
        yield ReplyEvent(
            type=ReplyEventType.ERROR,
            conversation_id=conversation_id,
            error="the reply was deleted with its conversation",
            error_code="not_found",
        )

    async def _stop_local(self, conversation_id: str) -> bool:
        """Stop this user's reply running here in the conversation; False when none runs."""
        live = self._shared.replies.get(self._key(conversation_id))
        if live is None:
            return False
        live.reply.stop()
        try:
            async with asyncio.timeout(STOP_WAIT_S):
                await live.reply.wait_finished()
        except TimeoutError:
            logger.warning("reply in %s did not stop within %.0fs", conversation_id, STOP_WAIT_S)
        return True

    def _ensure_saver(self) -> None:
        """One saver for the service and all its views (it saves every user's replies)."""
        shared = self._shared
        if shared.saver is None or shared.saver.done():
            shared.saver = asyncio.get_running_loop().create_task(
                self._save_progress(), name="reply-saver"
            )

    async def _save_progress(self) -> None:
        """Save partial text and heartbeats twice a second; obey stop flags from replicas."""
        while True:
            await asyncio.sleep(SAVE_INTERVAL_S)
            running = {
                live.start.placeholder.id: live
                for live in self._shared.replies.values()
                if live is not None and live.start.placeholder.id is not None
            }
            if not running:
                return  # started again with the next reply
            progress = {mid: live.reply.text() for mid, live in running.items() if mid}
            try:
                flagged = await asyncio.to_thread(self._store.save_progress, progress)
            except ChatbotError as exc:
                logger.warning("could not save reply progress: %s", exc.message)
                continue
            for message_id in flagged:
                running[message_id].reply.stop()

    def _valid_content(self, content: str) -> str:
        if not isinstance(content, str) or not content.strip():
            raise InvalidRequestError("content must be a non-empty string", param="content")
        if len(content) > self._limits.max_message_chars:
            raise InvalidRequestError(
                f"content has {len(content)} characters but this server accepts at most "
                f"{self._limits.max_message_chars} (CHATBOT_MAX_MESSAGE_CHARS)",
                param="content",
                code="message_too_long",
            )
        return content

    def _valid_title(self, title: str | None) -> str | None:
        if title is None:
            return None
        if len(title) > MAX_TITLE_CHARS:  # as sent, as the API's schema says
            raise InvalidRequestError(
                f"title has {len(title)} characters; the limit is {MAX_TITLE_CHARS}",
                param="title",
            )
        title = title.strip()
        if not title:
            raise InvalidRequestError("title must not be empty", param="title")
        return title

    def _valid_system_prompt(self, system_prompt: str | None) -> str | None:
        if system_prompt is not None and len(system_prompt) > self._limits.max_message_chars:
            raise InvalidRequestError(
                f"system_prompt has {len(system_prompt)} characters; the limit is "
                f"{self._limits.max_message_chars} (CHATBOT_MAX_MESSAGE_CHARS)",
                param="system_prompt",
            )
        return system_prompt


def _check_unicode(text: str, where: str) -> None:
    if not encodable(text):
        raise InvalidRequestError(
            f"{where} in the file contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is "
            "not a valid Unicode character",
            param="content",
            code="invalid_unicode",
        )


def end_event(conversation_id: str, final: Message, error: ChatbotError | None) -> ReplyEvent:
    """The last event of a reply: ``done`` with the stored message, or ``error`` with it."""
    if error is None:
        return ReplyEvent(type=ReplyEventType.DONE, conversation_id=conversation_id, message=final)
    return ReplyEvent(
        type=ReplyEventType.ERROR,
        conversation_id=conversation_id,
        message=final,
        error=error.message,
        error_code=error.code or error.error_type,
        **event_fields(error),
    )
