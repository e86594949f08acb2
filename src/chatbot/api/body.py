"""JSON bodies checked before FastAPI sees them, so bad bytes get a 400 that says what is wrong.

FastAPI alone answers invalid UTF-8 with a vague message and lets lone surrogates (``"\\ud800"``)
through to the tokenizer, where they fail late; a nesting bomb would hit the recursion limit,
and an integer literal longer than Python's conversion limit (4,300 digits) raises a bare
``ValueError`` inside the parser: each of these is a 400 here, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from chatbot.api.error_handlers import param_of
from chatbot.domain.jsontext import first_lone_surrogate, first_non_finite, parse_json
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
    parsed = parse_json(text, what="the body")
    bad = first_lone_surrogate(parsed)
    if bad is not None:
        param = param_of(bad)
        where = f"{param}: " if param else ""
        raise InvalidRequestError(
            f"{where}the text contains a lone UTF-16 surrogate (\\ud800-\\udfff), "
            "which is not a valid Unicode character",
            param=param,
            code="invalid_unicode",
        )
    bad = first_non_finite(parsed)
    if bad is not None:
        param = param_of(bad)
        where = f"{param}: " if param else ""
        raise InvalidRequestError(
            f"{where}NaN, Infinity and numbers beyond ±1.8e308 are not valid JSON numbers",
            param=param,
            code="invalid_number",
        )
    request._json = parsed  # Starlette's cache: FastAPI reuses it instead of parsing again
