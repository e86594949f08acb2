"""``HttpChatService``: the chat service over the backend's HTTP API (the microservice frontend).

It implements :class:`chatbot.service.protocol.ChatServiceProtocol` so the UI cannot tell it from
the in-process service. Every HTTP status and transport failure is translated here, at the
boundary, into the :mod:`chatbot.errors` class the in-process service would have raised: error
answers through :func:`chatbot.errors.from_http` (the API's own table, read backwards), transport
failures as :class:`BackendUnreachableError`.

Bound to a user (:meth:`HttpChatService.for_user`), every request names that user in
``X-Chatbot-User`` and ``X-Chatbot-User-Name`` (percent-encoded: headers are latin-1) next to
the service key; the backend honours them only with that key (``CHATBOT_SERVICE_KEY``).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import fields
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import EventSource, SSEError

from chatbot.domain import (
    Conversation,
    ConversationSummary,
    ExportFormat,
    GenerationParams,
    ReplyEvent,
    ReplyEventType,
)
from chatbot.domain.users import User
from chatbot.errors import (
    BackendUnreachableError,
    ChatbotError,
    UpstreamError,
    error_from_event,
    from_http,
)
from chatbot.service.params import ServiceLimits
from chatbot.service.waiting import RunnerStatus

logger = logging.getLogger(__name__)

# Tests and older callers know the inverse mapping by this name.
error_from_response = from_http

USER_HEADER = "X-Chatbot-User"
USER_NAME_HEADER = "X-Chatbot-User-Name"


def user_headers(user: User) -> dict[str, str]:
    """The headers that name ``user`` to the backend, percent-encoded (any Unicode fits)."""
    return {
        USER_HEADER: quote(user.id, safe=""),
        USER_NAME_HEADER: quote(user.name, safe=""),
    }


class ReplyStream(Iterator[ReplyEvent]):
    """The events of one SSE reply; closes its HTTP response when exhausted or closed.

    httpx-sse does the SSE framing (heartbeat comments, multi-line ``data:``, CRLF); this reads
    each ``data:`` as a :class:`ReplyEvent`. An ``error`` event is yielded like the others and
    its exception, rebuilt from the event's error body with the same class the backend raised,
    is kept in :attr:`error`. Reading can raise :class:`BackendUnreachableError` when the
    connection drops mid-reply; the reply itself goes on in the backend, and
    :meth:`HttpChatService.attach` finds it again.
    """

    def __init__(self, response: httpx.Response | None, conversation_id: str) -> None:
        self._response = response
        self._conversation_id = conversation_id
        self.error: ChatbotError | None = None
        self._events = self._read() if response is not None else iter(())

    def __iter__(self) -> ReplyStream:
        return self

    def __next__(self) -> ReplyEvent:
        return next(self._events)

    def __enter__(self) -> ReplyStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._response is not None:
            self._response.close()

    def _read(self) -> Iterator[ReplyEvent]:
        assert self._response is not None
        try:
            for sse in EventSource(self._response).iter_sse():
                if not sse.data:
                    continue  # an event with no data (an ``event: ping``) carries nothing
                payload = _json_object(sse.data)
                event = ReplyEvent.model_validate(payload)
                if event.type is ReplyEventType.ERROR:
                    self.error = error_from_event(payload)
                yield event
                if event.type in (ReplyEventType.DONE, ReplyEventType.ERROR):
                    return
        except SSEError as exc:  # a 200 that is not an event stream: a proxy's page, say
            raise UpstreamError(f"the backend did not answer with an event stream: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise BackendUnreachableError(
                "the backend stopped sending the reply (timed out); it may still be running"
            ) from exc
        except httpx.TransportError as exc:
            raise BackendUnreachableError(f"lost the connection to the backend: {exc}") from exc
        finally:
            self.close()
        raise BackendUnreachableError("the backend closed the reply stream before it ended")


def _json_object(data: str) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise UpstreamError("the backend sent a reply event that is not JSON") from exc
    if not isinstance(payload, dict):
        raise UpstreamError("the backend sent a reply event that is not a JSON object")
    return payload


class HttpChatService:
    """The chat service of a backend at ``base_url`` (``chatbot serve``); thread-safe."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._read_timeout_s = read_timeout_s
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            transport=transport,
        )
        # Shared with the views for_user makes: /v1/info is asked once per backend.
        self._info: dict[str, Any] = {}
        self._info_lock = threading.Lock()
        self._user_headers: dict[str, str] = {}
        self._view = False

    def for_user(self, user: User) -> HttpChatService:
        """The same backend and connection pool, every request naming ``user``.

        Closing the view does nothing; close the service it came from.
        """
        view = copy.copy(self)
        view._user_headers = user_headers(user)
        view._view = True
        return view

    # -- identity ----------------------------------------------------------------------
    @property
    def deployment(self) -> str:
        return "microservices"

    @property
    def model_id(self) -> str:
        """The backend's model name, asked once (``GET /v1/info``)."""
        with self._info_lock:
            if not self._info:
                self._info.update(self._json("GET", "/v1/info"))
            return str(self._info.get("model", "unknown"))

    def limits(self) -> ServiceLimits:
        """The backend's limits, asked once with the model (``GET /v1/info``)."""
        self.model_id  # noqa: B018 (fetches and caches /v1/info)
        return ServiceLimits(**self._info["limits"])

    def status(self) -> RunnerStatus:
        """``GET /v1/status``; it answers while the model loads (``loaded`` false)."""
        body = self._json("GET", "/v1/status")
        return RunnerStatus(**{f.name: body.get(f.name) for f in fields(RunnerStatus)})

    def close(self) -> None:
        if not self._view:
            self._client.close()

    # -- conversations -----------------------------------------------------------------
    def create_conversation(
        self,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
    ) -> Conversation:
        body = _fields(title=title, system_prompt=system_prompt, params=params)
        return Conversation.model_validate(self._json("POST", "/v1/conversations", json=body))

    def list_conversations(self, *, limit: int = 50, offset: int = 0) -> list[ConversationSummary]:
        page = self._json("GET", "/v1/conversations", params={"limit": limit, "offset": offset})
        return [ConversationSummary.model_validate(item) for item in page["data"]]

    def get_conversation(self, conversation_id: str) -> Conversation:
        return Conversation.model_validate(self._json("GET", _path(conversation_id)))

    def update_conversation(
        self,
        conversation_id: str,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
    ) -> Conversation:
        body = _fields(title=title, system_prompt=system_prompt, params=params)
        return Conversation.model_validate(self._json("PATCH", _path(conversation_id), json=body))

    def delete_conversation(self, conversation_id: str) -> None:
        self._request("DELETE", _path(conversation_id))

    def clear_conversation(self, conversation_id: str) -> Conversation:
        return Conversation.model_validate(self._json("POST", _path(conversation_id, "clear")))

    # -- replies -----------------------------------------------------------------------
    def send_message(self, conversation_id: str, content: str) -> ReplyStream:
        body = {"content": content, "stream": True}
        return self._stream("POST", _path(conversation_id, "messages"), conversation_id, body)

    def attach(self, conversation_id: str) -> ReplyStream:
        return self._stream("GET", _path(conversation_id, "reply"), conversation_id, None)

    def stop(self, conversation_id: str) -> bool:
        return bool(self._json("POST", _path(conversation_id, "stop")).get("stopped", False))

    def regenerate(self, conversation_id: str) -> ReplyStream:
        path = _path(conversation_id, "regenerate")
        return self._stream("POST", path, conversation_id, {"stream": True})

    def edit_message(self, conversation_id: str, message_id: str, content: str) -> ReplyStream:
        path = _path(conversation_id, "messages", message_id)
        return self._stream("PUT", path, conversation_id, {"content": content, "stream": True})

    def select_version(self, conversation_id: str, message_id: str) -> Conversation:
        path = _path(conversation_id, "messages", message_id, "select")
        return Conversation.model_validate(self._json("POST", path))

    # -- files -------------------------------------------------------------------------
    def export_conversation(self, conversation_id: str, fmt: ExportFormat) -> str:
        response = self._request(
            "GET", _path(conversation_id, "export"), params={"format": fmt.value}
        )
        return response.text

    def import_conversation(self, text: str, fmt: ExportFormat) -> Conversation:
        body = {"format": fmt.value, "content": text}
        return Conversation.model_validate(
            self._json("POST", "/v1/conversations/import", json=body)
        )

    # -- transport ---------------------------------------------------------------------
    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise UpstreamError(f"the backend sent invalid JSON for {method} {path}") from exc

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, headers=self._user_headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise self._timeout(exc) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise from_http(response.status_code, response.content, response.headers)
        return response

    def _stream(
        self, method: str, path: str, conversation_id: str, body: dict[str, Any] | None
    ) -> ReplyStream:
        """Open the SSE request now, so refusals (404, 409, 429...) raise at the call."""
        request = self._client.build_request(
            method, path, json=body, headers={"Accept": "text/event-stream", **self._user_headers}
        )
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise self._timeout(exc) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            try:
                content = response.read()
            finally:
                response.close()
            raise from_http(response.status_code, content, response.headers)
        if response.status_code == 204:
            response.close()
            return ReplyStream(None, conversation_id)
        return ReplyStream(response, conversation_id)

    def _unreachable(self, exc: httpx.TransportError) -> BackendUnreachableError:
        logger.warning("backend %s unreachable: %s", self.base_url, type(exc).__name__)
        return BackendUnreachableError(f"cannot reach the backend at {self.base_url}: {exc}")

    def _timeout(self, exc: httpx.TimeoutException) -> BackendUnreachableError:
        logger.warning("backend %s timed out: %s", self.base_url, type(exc).__name__)
        return BackendUnreachableError(
            f"the backend at {self.base_url} did not answer within {self._read_timeout_s:g} s"
        )


def _path(conversation_id: str, *parts: str) -> str:
    return "/v1/conversations/" + "/".join(quote(s, safe="") for s in (conversation_id, *parts))


def _fields(
    *, title: str | None, system_prompt: str | None, params: GenerationParams | None
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if title is not None:
        body["title"] = title
    if system_prompt is not None:
        body["system_prompt"] = system_prompt
    if params is not None:
        body["params"] = params.model_dump(mode="json", exclude_unset=True)  # as in process
    return body
