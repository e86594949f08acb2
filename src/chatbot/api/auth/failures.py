"""Why a request was not let in: the status, the OpenAI-style error and its message.

Messages say what to send instead and never repeat what was sent (no key or token text).
"""

from __future__ import annotations


class AuthFailure(Exception):
    """Raised while resolving the user; the middleware answers it."""

    def __init__(
        self, status: int, message: str, code: str, error_type: str = "authentication_error"
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.error_type = error_type


def unauthenticated(message: str, code: str = "invalid_api_key") -> AuthFailure:
    return AuthFailure(401, message, code)


def bad_identity(message: str, code: str) -> AuthFailure:
    return AuthFailure(400, message, code, "invalid_request_error")


def provider_unavailable(message: str) -> AuthFailure:
    return AuthFailure(503, message, "oidc_unavailable", "service_unavailable")


def not_ready(message: str) -> AuthFailure:
    return AuthFailure(503, message, "not_ready", "service_unavailable")
