"""One error shape for every failure: the OpenAI body ``{"error": {message, type, param, code}}``.

Status, type, code and ``Retry-After`` come from the one table in :mod:`chatbot.errors`
(:func:`~chatbot.errors.to_http`), never from message text. Framework errors (validation,
unknown route, wrong method) are translated here too, and anything unexpected becomes a 500
that says nothing about the internals (the traceback goes to the log).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from chatbot.errors import (
    ChatbotError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    error_body,
    to_http,
)

logger = logging.getLogger(__name__)

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

__all__ = [
    "HTTPStatusError",
    "allowed_methods",
    "body_of",
    "error_body",
    "http_error",
    "install_handlers",
    "param_of",
    "response_for",
    "validation_error",
]


class HTTPStatusError(ChatbotError):
    """Any other framework HTTP error, keeping its status."""


def body_of(exc: ChatbotError) -> dict[str, Any]:
    """The OpenAI error body for an error (:func:`chatbot.errors.to_http`)."""
    return to_http(exc)[1]


def response_for(exc: ChatbotError) -> JSONResponse:
    status, body, headers = to_http(exc)
    return JSONResponse(body, status_code=status, headers=headers)


def param_of(loc: Sequence[int | str]) -> str | None:
    """``("body", "messages", 0, "role")`` -> ``"messages[0].role"`` (OpenAI's spelling)."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


def validation_error(exc: RequestValidationError) -> ChatbotError:
    """The first problem, named by its parameter; the rest are counted."""
    errors = list(exc.errors())
    if not errors:
        return _invalid("the request is invalid", None)
    first = errors[0]
    param = param_of(first.get("loc", ()))
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        ctx = first.get("ctx") or {}
        detail = ctx.get("error", "malformed JSON")
        return _invalid(f"the body is not valid JSON: {detail}", None, "invalid_json")
    if kind == "missing" and param is None:
        return _invalid("the request body is missing; send a JSON object", None, "missing_body")
    message = str(first.get("msg", "invalid value"))
    text = f"{param}: {message}" if param else message
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return _invalid(text, param, kind or None)


def _invalid(message: str, param: str | None, code: str | None = None) -> ChatbotError:
    return InvalidRequestError(message, param=param, code=code)


def http_error(exc: StarletteHTTPException, request: Request) -> ChatbotError:
    if exc.status_code == 404:
        return NotFoundError(
            f"no route {request.method} {request.url.path}; see /docs", code="unknown_route"
        )
    if exc.status_code == 405:
        return MethodNotAllowedError(
            f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed"
        )
    error = HTTPStatusError(str(exc.detail))
    error.status_code = exc.status_code
    error.error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return error


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods of this path, for ``Allow``: Starlette's 405 names only one route's.

    The OpenAPI document says them (a literal path such as ``/v1/conversations/import``
    wins over a template that also matches it); paths it does not describe (``/docs``) are
    asked of the routes themselves.
    """
    path = request.scope["path"]
    documented: dict[str, Any] = app.openapi().get("paths", {})
    matching = [template for template in documented if _template_matches(template, path)]
    literal = [template for template in matching if "{" not in template]
    methods = {method.upper() for t in (literal or matching) for method in documented[t]}
    if not methods:
        for method in _METHODS:
            scope = {**request.scope, "method": method}
            if any(route.matches(scope)[0] is Match.FULL for route in app.router.routes):
                methods.add(method)
    return [method for method in _METHODS if method in methods]


def _template_matches(template: str, path: str) -> bool:
    pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
    return re.fullmatch(pattern, path) is not None


def install_handlers(app: FastAPI) -> None:
    async def on_chatbot_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ChatbotError)
        if exc.status_code >= 500:
            logger.warning("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return response_for(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return response_for(validation_error(exc))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        response = response_for(http_error(exc, request))
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(app, request))
        elif exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            error_body("the server failed to answer; this is a bug on our side", "server_error"),
            status_code=500,
        )

    app.add_exception_handler(ChatbotError, on_chatbot_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
