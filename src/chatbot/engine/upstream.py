"""The boundary to an OpenAI-compatible upstream: its URLs, its answers and its failures.

httpx exceptions and upstream status codes become :mod:`chatbot.errors` exceptions here, by
class and status, never by message text, so every layer above handles one error tree.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from chatbot.domain import FinishReason
from chatbot.errors import (
    ChatbotError,
    ConfigurationError,
    InvalidRequestError,
    OverloadedError,
    PayloadTooLargeError,
    UnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)

_MAX_ERROR_BODY = 64 * 1024


def api_root(base_url: str) -> str:
    """The ``/v1`` root of the upstream; a bare ``http://host:port`` gets ``/v1`` added."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"CHATBOT_OPENAI_BASE_URL: {base_url!r} is not an http(s) URL "
            "(e.g. http://vllm:8000/v1)"
        )
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def connection_error(exc: httpx.TransportError, where: str) -> ChatbotError:
    """A transport failure: timeouts are 504, refused or unreachable is 503, the rest 502."""
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"the upstream model server at {where} did not answer in time")
    if isinstance(exc, httpx.ConnectError):
        return UnavailableError(f"cannot reach the upstream model server at {where}")
    return UpstreamError(f"the connection to the upstream model server at {where} failed")


def status_error(response: httpx.Response, where: str) -> ChatbotError:
    """Map an upstream error answer (its body already read) onto our error classes."""
    status = response.status_code
    message, param, code = _error_fields(response)
    said = f": {message}" if message else ""
    if status in (400, 422):
        return InvalidRequestError(
            message or "the upstream model server rejected the request", param=param, code=code
        )
    if status == 413:
        return PayloadTooLargeError(f"the upstream model server found the request too large{said}")
    if status == 429:
        return OverloadedError(
            f"the upstream model server is overloaded{said}",
            retry_after_s=_retry_after(response),
        )
    if status in (401, 403):
        return UpstreamError(
            f"the upstream model server at {where} refused our credentials ({status}); "
            "check CHATBOT_OPENAI_API_KEY"
        )
    if status == 404:
        return UpstreamError(
            f"the upstream model server at {where} answered 404{said}; "
            "check CHATBOT_OPENAI_BASE_URL and CHATBOT_MODEL"
        )
    if status == 503:
        return UnavailableError(f"the upstream model server is unavailable{said}")
    if status == 504:
        return UpstreamTimeoutError(f"the upstream model server timed out{said}")
    return UpstreamError(f"the upstream model server answered {status}{said}")


def _error_fields(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """The OpenAI error body's message, param and code; FastAPI's ``detail`` also works."""
    try:
        body = json.loads(response.content[:_MAX_ERROR_BODY])
    except (ValueError, UnicodeDecodeError):
        return response.text[:300].strip(), None, None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = error.get("message", error.get("detail", ""))
            param, code = error.get("param"), error.get("code")
            return (
                str(message)[:2000] if message else "",
                str(param) if param is not None else None,
                str(code) if code is not None else None,
            )
        if isinstance(error, str):
            return error[:2000], None, None
    return "", None, None


def _retry_after(response: httpx.Response) -> int:
    try:
        return max(1, int(float(response.headers.get("retry-after", "1"))))
    except ValueError:
        return 1


@dataclass(frozen=True)
class StreamChunk:
    """What one SSE ``data:`` line of a chat completion stream carries that we use."""

    text: str = ""
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}


def parse_stream(lines: Iterator[str]) -> Iterator[StreamChunk | None]:
    """Decode the SSE lines of a streamed chat completion.

    Yields ``None`` for comments and blank lines (heartbeats), so the reader can check for
    cancellation between them; ends at ``[DONE]``. A chunk that is not JSON, or an error
    object in the stream, raises :class:`UpstreamError`.
    """
    for line in lines:
        if not line.startswith("data:"):
            yield None  # blank separator, ': ping' comment, 'event:' or 'id:' field
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            payload = json.loads(data)
        except ValueError:
            raise UpstreamError("the upstream model server sent a malformed stream chunk") from None
        if not isinstance(payload, dict):
            raise UpstreamError("the upstream model server sent a malformed stream chunk")
        yield _chunk_of(payload)


def _chunk_of(payload: dict[str, Any]) -> StreamChunk:
    error = payload.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamError(f"the upstream model server failed mid-reply: {message}")
    text = ""
    finish: FinishReason | None = None
    for choice in payload.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or {}
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str):
            text += content
        reason = choice.get("finish_reason")
        if reason:
            finish = _FINISH.get(str(reason), FinishReason.STOP)
    usage = payload.get("usage")
    if isinstance(usage, dict):
        return StreamChunk(
            text,
            finish,
            _int_or_none(usage.get("prompt_tokens")),
            _int_or_none(usage.get("completion_tokens")),
        )
    return StreamChunk(text, finish)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None
