"""JSON bodies checked before FastAPI sees them, so bad bytes get a 400 that says what is wrong.

FastAPI alone answers invalid UTF-8 with a vague message and lets lone surrogates (``"\\ud800"``)
through to the tokenizer, where they fail late; a nesting bomb would hit the recursion limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from chatbot.api.error_handlers import param_of
from chatbot.errors import InvalidRequestError

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class StrictJSONRoute(APIRoute):
    """An APIRoute that validates the encoding and syntax of a JSON body first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            if request.method in _BODY_METHODS:
                await check_json_body(request)
            return await handler(request)

        return checked


async def check_json_body(request: Request) -> None:
    body = await request.body()
    if not body.strip():
        return
    content_type = request.headers.get("content-type", "application/json").split(";")[0]
    if not content_type.strip().lower().endswith("json"):
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(
            f"the body is not valid UTF-8 (bad byte at offset {exc.start}); send UTF-8 JSON",
            code="invalid_encoding",
        ) from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise InvalidRequestError("the body nests JSON too deeply", code="invalid_json") from None
    bad = _first_lone_surrogate(parsed)
    if bad is not None:
        param = param_of(bad)
        where = f"{param}: " if param else ""
        raise InvalidRequestError(
            f"{where}the text contains a lone UTF-16 surrogate (\\ud800-\\udfff), "
            "which is not a valid Unicode character",
            param=param,
            code="invalid_unicode",
        )
    request._json = parsed  # Starlette's cache: FastAPI reuses it instead of parsing again


def _first_lone_surrogate(value: Any) -> tuple[int | str, ...] | None:
    """Path to the first string (key or value) that cannot be encoded as UTF-8; iterative."""
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return path
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                if not _encodable(key):
                    return path
                stack.append(((*path, key), child))
        elif isinstance(item, list):
            for index in range(len(item) - 1, -1, -1):
                stack.append(((*path, index), item[index]))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
