"""The project's own exception tree.

Every layer raises these; the API maps each class (never its message text) to an HTTP status and
the OpenAI error body, and the UI maps them to banners. Third-party errors are translated at the
boundary where they happen.
"""

from __future__ import annotations


class ChatbotError(Exception):
    """Base of every error this project raises on purpose."""

    status_code = 500
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class ConfigurationError(ChatbotError):
    """A setting is invalid; raised at start."""


class InvalidRequestError(ChatbotError):
    """The caller sent something we cannot accept; says which parameter and why."""

    status_code = 400
    error_type = "invalid_request_error"


class MethodNotAllowedError(InvalidRequestError):
    status_code = 405


class ContextOverflowError(InvalidRequestError):
    """A message cannot fit into the model's context window even alone."""

    def __init__(self, message: str, *, prompt_tokens: int, context_window: int):
        super().__init__(message, param="messages", code="context_length_exceeded")
        self.prompt_tokens = prompt_tokens
        self.context_window = context_window


class AuthenticationError(ChatbotError):
    status_code = 401
    error_type = "authentication_error"


class NotFoundError(ChatbotError):
    status_code = 404
    error_type = "not_found_error"


class ConflictError(ChatbotError):
    """The conversation is busy with another reply."""

    status_code = 409
    error_type = "conflict_error"


class PayloadTooLargeError(ChatbotError):
    status_code = 413
    error_type = "invalid_request_error"


class OverloadedError(ChatbotError):
    """Every place and every queue slot is taken; the caller should retry later."""

    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after_s: int):
        super().__init__(message, code="overloaded")
        self.retry_after_s = retry_after_s


class UnavailableError(ChatbotError):
    """Not ready yet, draining, or a dependency (database, upstream) is down."""

    status_code = 503
    error_type = "service_unavailable"


class UpstreamError(ChatbotError):
    """The upstream model server failed or answered badly."""

    status_code = 502
    error_type = "upstream_error"


class RequestTimeoutError(ChatbotError):
    """The request ran longer than it may (504); the upstream's own timeout is a subclass."""

    status_code = 504
    error_type = "timeout_error"


class UpstreamTimeoutError(RequestTimeoutError, UpstreamError):
    status_code = 504
    error_type = "upstream_error"


class BackendUnreachableError(UnavailableError):
    """The UI's HTTP transport cannot reach the backend."""


class GenerationError(ChatbotError):
    """The model failed while generating."""
