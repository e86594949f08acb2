"""The project's own exception tree, and the one mapping between its classes and HTTP.

Every layer raises these; the UI maps them to banners. Third-party errors are translated at
the boundary where they happen. The tree::

    ChatbotError
    ├── ConfigurationError
    ├── GenerationError
    ├── InvalidRequestError
    │   ├── MethodNotAllowedError
    │   └── ContextOverflowError
    ├── AuthenticationError
    ├── NotFoundError
    │   └── ModelNotFoundError
    ├── ConflictError
    ├── PayloadTooLargeError
    ├── OverloadedError
    ├── UnavailableError
    │   └── BackendUnreachableError
    ├── UpstreamError
    │   └── UpstreamTimeoutError  (also a RequestTimeoutError)
    └── RequestTimeoutError
        └── UpstreamTimeoutError

:data:`ERRORS` gives each class its HTTP status, OpenAI error ``type`` and default ``code``,
and is read in both directions: :func:`to_http` (the API answering) and :func:`from_http` /
:func:`error_from_event` (an HTTP client reading an answer or a streamed error event). The
class comes back from the status and the body's type and code, never from message text, and
``Retry-After`` travels unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ChatbotError(Exception):
    """Base of every error this project raises on purpose.

    ``status_code``, ``error_type`` and ``default_code`` come from :data:`ERRORS`.
    """

    status_code: int
    error_type: str
    default_code: str | None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code


class ConfigurationError(ChatbotError):
    """A setting is invalid; raised at start."""


class GenerationError(ChatbotError):
    """The model failed while generating."""


class InvalidRequestError(ChatbotError):
    """The caller sent something we cannot accept; says which parameter and why."""


class MethodNotAllowedError(InvalidRequestError):
    """The route exists but not for this HTTP method."""


class ContextOverflowError(InvalidRequestError):
    """A message cannot fit into the model's context window even alone.

    The numbers are ``None`` when the error was rebuilt from an HTTP answer.
    """

    def __init__(
        self,
        message: str,
        *,
        prompt_tokens: int | None = None,
        context_window: int | None = None,
        completion_tokens: int | None = None,
    ):
        super().__init__(message, param="messages")
        self.prompt_tokens = prompt_tokens
        self.context_window = context_window
        self.completion_tokens = completion_tokens

    def in_openai_words(self) -> ContextOverflowError:
        """The same error worded as OpenAI words it.

        Clients with fallbacks for long prompts (litellm, LangChain) recognise the overflow by
        this sentence as well as by the code; without the numbers the message stays as it is.
        """
        if self.prompt_tokens is None or self.context_window is None:
            return self
        completion = self.completion_tokens or 0
        message = (
            f"This model's maximum context length is {self.context_window} tokens. However, "
            f"you requested {self.prompt_tokens + completion} tokens ({self.prompt_tokens} in "
            f"the messages, {completion} in the completion). Please reduce the length of the "
            "messages or completion."
        )
        return ContextOverflowError(
            message,
            prompt_tokens=self.prompt_tokens,
            context_window=self.context_window,
            completion_tokens=self.completion_tokens,
        )


class AuthenticationError(ChatbotError):
    """No API key, or a wrong one."""


class NotFoundError(ChatbotError):
    """No such conversation, message or route."""


class ModelNotFoundError(NotFoundError):
    """The request names a model this server does not serve (OpenAI's ``model_not_found``)."""


class ConflictError(ChatbotError):
    """The conversation is busy with another reply."""


class PayloadTooLargeError(ChatbotError):
    """The request body is larger than the server accepts."""


class OverloadedError(ChatbotError):
    """Every place and every queue slot is taken; the caller should retry later."""

    def __init__(self, message: str, *, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnavailableError(ChatbotError):
    """Not ready yet, draining, or a dependency (database, upstream) is down."""


class BackendUnreachableError(UnavailableError):
    """The UI's HTTP transport cannot reach the backend."""


class UpstreamError(ChatbotError):
    """The upstream model server failed or answered badly."""


class RequestTimeoutError(ChatbotError):
    """The request ran longer than it may (504); the upstream's own timeout is a subclass."""


class UpstreamTimeoutError(RequestTimeoutError, UpstreamError):
    """The upstream model server did not answer in time."""


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One row of :data:`ERRORS`."""

    cls: type[ChatbotError]
    status: int
    type: str
    code: str | None = None


# The general class of each (status, type) comes before its more specific ones: reading an
# answer, an unknown code falls back to the first row that matches status and type.
ERRORS: tuple[ErrorKind, ...] = (
    ErrorKind(ChatbotError, 500, "server_error"),
    ErrorKind(ConfigurationError, 500, "server_error", "configuration_error"),
    ErrorKind(GenerationError, 500, "server_error", "generation_error"),
    ErrorKind(InvalidRequestError, 400, "invalid_request_error"),
    ErrorKind(ContextOverflowError, 400, "invalid_request_error", "context_length_exceeded"),
    ErrorKind(MethodNotAllowedError, 405, "invalid_request_error", "method_not_allowed"),
    ErrorKind(PayloadTooLargeError, 413, "invalid_request_error", "body_too_large"),
    ErrorKind(AuthenticationError, 401, "authentication_error"),
    ErrorKind(NotFoundError, 404, "not_found_error"),
    ErrorKind(ModelNotFoundError, 404, "invalid_request_error", "model_not_found"),
    ErrorKind(ConflictError, 409, "conflict_error"),
    ErrorKind(OverloadedError, 429, "rate_limit_error", "overloaded"),
    ErrorKind(UnavailableError, 503, "service_unavailable"),
    ErrorKind(BackendUnreachableError, 503, "service_unavailable", "backend_unreachable"),
    ErrorKind(UpstreamError, 502, "upstream_error"),
    ErrorKind(UpstreamTimeoutError, 504, "upstream_error", "upstream_timeout"),
    ErrorKind(RequestTimeoutError, 504, "timeout_error"),
)


def _stamp_classes() -> None:
    """Give each class its row as class attributes (``exc.status_code`` and so on)."""
    for kind in ERRORS:
        kind.cls.status_code = kind.status
        kind.cls.error_type = kind.type
        kind.cls.default_code = kind.code


_stamp_classes()

DEFAULT_RETRY_AFTER_S = 1
RETRY_AFTER = "Retry-After"


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The OpenAI error body: ``{"error": {message, type, param, code}}``."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def to_http(exc: ChatbotError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, OpenAI error body and headers (``Retry-After`` on overload) for an error."""
    headers: dict[str, str] = {}
    if isinstance(exc, OverloadedError):
        headers[RETRY_AFTER] = str(exc.retry_after_s)
    body = error_body(exc.message, exc.error_type, exc.param, exc.code)
    return exc.status_code, body, headers


def event_fields(exc: ChatbotError) -> dict[str, Any]:
    """What a streamed error event carries so :func:`error_from_event` rebuilds the same class."""
    status, body, _ = to_http(exc)
    fields: dict[str, Any] = {"error_status": status, "error_body": body["error"]}
    if isinstance(exc, OverloadedError):
        fields["retry_after_s"] = exc.retry_after_s
    return fields


def from_http(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
) -> ChatbotError:
    """The exception an error answer stands for: class from status, type and code."""
    fields = _error_object(body)
    fallback = f"the server answered HTTP {status}"
    if fields is None:
        detail = _detail(body)
        message = f"{fallback}: {detail}" if detail else fallback
        return _build(_kind_for(status, None, None), message, None, None, _retry_after(headers))
    message = _text(fields.get("message")) or fallback
    error_type, code = _text(fields.get("type")), _text(fields.get("code"))
    cls = _kind_for(status, error_type, code)
    return _build(cls, message, _text(fields.get("param")), code, _retry_after(headers))


def error_from_event(payload: Mapping[str, Any]) -> ChatbotError:
    """The exception a streamed error event stands for.

    Reads a reply event (``error_body``, with ``error_status`` and ``retry_after_s`` when the
    server sent them, see :func:`event_fields`) or an OpenAI stream chunk (``{"error": {...}}``).
    """
    fields = payload.get("error_body")
    if not isinstance(fields, Mapping):
        fields = payload.get("error") if isinstance(payload.get("error"), Mapping) else None
    if fields is None:  # an event from a server without the body: its text and code only
        fields = {"message": payload.get("error"), "code": payload.get("error_code")}
    status = payload.get("error_status")
    status = status if isinstance(status, int) else None
    message = _text(fields.get("message")) or "the server reported an error"
    error_type, code = _text(fields.get("type")), _text(fields.get("code"))
    retry = payload.get("retry_after_s")
    retry_after_s = retry if isinstance(retry, int) else DEFAULT_RETRY_AFTER_S
    cls = _kind_for(status, error_type, code)
    return _build(cls, message, _text(fields.get("param")), code, retry_after_s)


def _kind_for(status: int | None, error_type: str | None, code: str | None) -> type[ChatbotError]:
    """The row for an answer: same status (when known), then same type, then same code."""
    rows = [k for k in ERRORS if status is None or k.status == status]
    if not rows:  # a status no row has (a proxy's 599, a framework's 422)
        assert status is not None
        return UpstreamError if status >= 500 else InvalidRequestError
    same_type = [k for k in rows if k.type == error_type]
    for pool in (same_type, rows):
        if not pool:
            continue
        exact = [k for k in pool if code is not None and k.code == code]
        general = [k for k in pool if k.code is None]
        return (exact or general or pool)[0].cls
    raise AssertionError("unreachable: rows is not empty")


def _build(
    cls: type[ChatbotError],
    message: str,
    param: str | None,
    code: str | None,
    retry_after_s: int,
) -> ChatbotError:
    error = (
        OverloadedError(message, retry_after_s=retry_after_s)
        if cls is OverloadedError
        else cls(message)
    )
    error.param, error.code = param, code
    return error


def _parsed(body: bytes | str | Mapping[str, Any] | None) -> Any:
    if body is None or isinstance(body, Mapping):
        return body
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _error_object(body: bytes | str | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    data = _parsed(body)
    if isinstance(data, Mapping) and isinstance(data.get("error"), Mapping):
        error: Mapping[str, Any] = data["error"]
        return error
    return None


def _detail(body: bytes | str | Mapping[str, Any] | None) -> str | None:
    """A framework error that escaped the API's handlers: ``{"detail": ...}``."""
    data = _parsed(body)
    if isinstance(data, Mapping) and "detail" in data:
        return str(data["detail"])
    return None


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


def _retry_after(headers: Mapping[str, str] | None) -> int:
    """Integer seconds as sent; an HTTP date or anything else waits the default."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    value = value.strip() if value is not None else ""
    return int(value) if value.isascii() and value.isdigit() else DEFAULT_RETRY_AFTER_S
