"""The async :class:`ChatService` behind the synchronous contract, for the monolith's UI.

Streamlit runs each browser session's script in a thread of its own and wants plain calls and
iterators. One anyio ``BlockingPortal`` (one event loop in one thread, for the whole process)
runs the same service the backend runs, so admission control, limits and metrics are the same
in both deployments; every call crosses into that loop and back, and reading a reply stream
takes one hop per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from chatbot.config import EngineSettings, LimitSettings, ServerSettings, StoreSettings
from chatbot.domain import (
    Conversation,
    ConversationSummary,
    ExportFormat,
    GenerationParams,
    ReplyEvent,
)
from chatbot.domain.users import User
from chatbot.engine import warm_up
from chatbot.service.admission import AdmissionControl
from chatbot.service.local import ChatService
from chatbot.service.metrics import Metrics
from chatbot.service.params import ServiceLimits
from chatbot.service.runner import ReplyLimits, ReplyRunner
from chatbot.service.waiting import RunnerStatus

logger = logging.getLogger(__name__)

T = TypeVar("T")
_END = object()


class PortalChatService:
    """Implements :class:`chatbot.service.protocol.ChatServiceProtocol` in process."""

    def __init__(self, service: ChatService, portal: BlockingPortal, stop: Callable[[], Any]):
        self.service = service
        self._portal = portal
        self._stop_portal = stop
        self._closed = False

    @classmethod
    def open(
        cls,
        engine_settings: EngineSettings,
        store_settings: StoreSettings,
        limits: LimitSettings,
        server: ServerSettings | None = None,
        *,
        warm: bool = True,
        background: bool = False,
    ) -> PortalChatService:
        """Start the portal, open the service on it, and load (and warm) the model.

        With ``background`` this returns once the store is open and the model loads on the
        portal's loop: the page shows at once, with the loading progress, and a message sent
        meanwhile waits in phase ``loading``.
        """
        server = server or ServerSettings()
        context = start_blocking_portal()
        portal = context.__enter__()
        try:
            service = portal.call(_open_service, engine_settings, store_settings, limits, server)
            if background:
                portal.call(_load_in_background, service, warm)
            elif warm:
                portal.call(warm_up, service.runner.engine)
        except BaseException:
            context.__exit__(None, None, None)
            raise
        return cls(service, portal, lambda: context.__exit__(None, None, None))

    @classmethod
    def around(cls, service: ChatService) -> PortalChatService:
        """A portal for a service built elsewhere (tests)."""
        context = start_blocking_portal()
        portal = context.__enter__()
        return cls(service, portal, lambda: context.__exit__(None, None, None))

    # -- identity ----------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.service.model_id

    @property
    def deployment(self) -> str:
        return "monolith"

    @property
    def metrics(self) -> Metrics:
        return self.service.metrics

    def limits(self) -> ServiceLimits:
        return self.service.limits()

    def status(self) -> RunnerStatus:
        return self.service.status()

    def for_user(self, user: User) -> PortalChatService:
        """The service view of ``user`` on the same portal; its close does nothing."""
        view = PortalChatService(self.service.for_user(user), self._portal, lambda: None)
        view._closed = True
        return view

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self.service.close)
        finally:
            self._stop_portal()

    # -- conversations -----------------------------------------------------------------
    def create_conversation(
        self,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
    ) -> Conversation:
        return self._call(
            lambda: self.service.create_conversation(
                title=title, system_prompt=system_prompt, params=params
            )
        )

    def list_conversations(self, *, limit: int = 50, offset: int = 0) -> list[ConversationSummary]:
        return self._call(lambda: self.service.list_conversations(limit=limit, offset=offset))

    def get_conversation(self, conversation_id: str) -> Conversation:
        return self._call(lambda: self.service.get_conversation(conversation_id))

    def update_conversation(
        self,
        conversation_id: str,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
    ) -> Conversation:
        return self._call(
            lambda: self.service.update_conversation(
                conversation_id, title=title, system_prompt=system_prompt, params=params
            )
        )

    def delete_conversation(self, conversation_id: str) -> None:
        self._call(lambda: self.service.delete_conversation(conversation_id))

    def clear_conversation(self, conversation_id: str) -> Conversation:
        return self._call(lambda: self.service.clear_conversation(conversation_id))

    # -- replies -----------------------------------------------------------------------
    def send_message(self, conversation_id: str, content: str) -> Iterator[ReplyEvent]:
        events = self._call(lambda: self.service.send_message(conversation_id, content))
        return self._iterate(events)

    def regenerate(self, conversation_id: str) -> Iterator[ReplyEvent]:
        return self._iterate(self._call(lambda: self.service.regenerate(conversation_id)))

    def edit_message(
        self, conversation_id: str, message_id: str, content: str
    ) -> Iterator[ReplyEvent]:
        events = self._call(lambda: self.service.edit_message(conversation_id, message_id, content))
        return self._iterate(events)

    def select_version(self, conversation_id: str, message_id: str) -> Conversation:
        return self._call(lambda: self.service.select_version(conversation_id, message_id))

    def attach(self, conversation_id: str) -> Iterator[ReplyEvent]:
        events = self._call(lambda: self.service.attach(conversation_id))
        return iter(()) if events is None else self._iterate(events)

    def stop(self, conversation_id: str) -> bool:
        return self._call(lambda: self.service.stop(conversation_id))

    # -- files -------------------------------------------------------------------------
    def export_conversation(self, conversation_id: str, fmt: ExportFormat) -> str:
        return self._call(lambda: self.service.export_conversation(conversation_id, fmt))

    def import_conversation(self, text: str, fmt: ExportFormat) -> Conversation:
        return self._call(lambda: self.service.import_conversation(text, fmt))

    # -- the bridge --------------------------------------------------------------------
    def _call(self, work: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await work()

        return self._portal.call(run)

    def _iterate(self, events: AsyncIterator[ReplyEvent]) -> Iterator[ReplyEvent]:
        """A plain iterator over an async one; closing it closes the async one (reading only:
        the reply belongs to the service and goes on)."""

        async def step() -> Any:
            return await anext(events, _END)

        try:
            while (item := self._portal.call(step)) is not _END:
                yield item
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    self._portal.call(aclose)


async def _open_service(
    engine_settings: EngineSettings,
    store_settings: StoreSettings,
    limits: LimitSettings,
    server: ServerSettings,
) -> ChatService:
    from chatbot.engine.factory import create_engine

    engine = create_engine(engine_settings)
    runner = ReplyRunner(
        engine,
        AdmissionControl(
            server.max_concurrent_requests, server.max_queued_requests, server.queue_timeout_s
        ),
        Metrics(),
        ReplyLimits(server.queue_timeout_s, server.request_timeout_s),
    )
    service = await asyncio.to_thread(
        lambda: ChatService.open(
            engine_settings, store_settings, limits, engine=engine, runner=runner
        )
    )
    service._owns_engine = True
    return service


async def _load_in_background(service: ChatService, warm: bool) -> None:
    engine = service.runner.engine

    async def load() -> None:
        started = asyncio.get_running_loop().time()
        if warm:
            await warm_up(engine)
        else:
            await asyncio.to_thread(engine.load)
        logger.info(
            "model %s ready in %.1f s", engine.model_id, asyncio.get_running_loop().time() - started
        )

    service.runner.load_in_background(load())
