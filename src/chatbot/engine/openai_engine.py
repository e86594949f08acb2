"""The ``openai`` engine: any OpenAI-compatible model server (vLLM, TGI, Ollama, llama.cpp's
server, another ``chatbot serve``) answers, and we pass its stream through chunk by chunk.

The upstream owns the model, the batching and the context window; this engine owns the
connection, through the official ``openai`` async client: it sends the request, decodes the SSE
stream, applies the timeouts and raises typed errors, which :func:`_request_error` and
:func:`_stream_error` map onto :mod:`chatbot.errors` by class and status, never by message text.
Leaving the stream early closes the upstream response, so the upstream stops generating too.
No thread per request: the stream is read on the caller's event loop.

What went: the hand-written HTTP requests, SSE parser, error-body parser and connect-retry loop
of ``upstream.py`` and the producer thread per reply (``wc -l`` of openai_engine.py +
upstream.py: 342 + 179 = 521 before, 457 + 0 after). What stays is ours to decide: the mapping
onto our errors, the URL check, the fallbacks for upstreams that do not stream, and a client per
event loop (below), which the threaded engine did not need.

Retries: only connection attempts that failed before anything was sent (refused, unreachable)
are repeated, by httpx's own transport (``retries=``). The ``openai`` client's ``max_retries``
is 0 because it would also resend after a read timeout, a dropped connection, a 429 (sleeping
out the upstream's Retry-After instead of handing it to our caller) or a 5xx.

Clients: one ``AsyncOpenAI`` per event loop, made on the first reply in that loop, because a
connection pool belongs to the loop that opened it (the server has one loop; tests and the
Streamlit portal may use others). It is closed on its own loop, by :meth:`OpenAIEngine.close`
or when that loop shuts down, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai
from openai.types.chat import ChatCompletion

from chatbot.config import EngineSettings
from chatbot.domain import FinishReason, GenerationParams, Message, Usage
from chatbot.engine.base import Chunk
from chatbot.engine.tool_request import ToolRequest, calls_as_text
from chatbot.errors import (
    ChatbotError,
    ConfigurationError,
    ContextOverflowError,
    InvalidRequestError,
    OverloadedError,
    PayloadTooLargeError,
    UnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)

logger = logging.getLogger(__name__)

# The upstream fits the prompt into its own window; this only bounds what we claim to accept.
DEFAULT_CONTEXT_WINDOW = 131_072
CONNECT_RETRIES = 3  # httpx waits 0, 0.5 and 1 s between attempts
_CONNECT_TIMEOUT_S = 10.0
# The client refuses to start without a key (and would read OPENAI_API_KEY from the environment,
# which must not go to an arbitrary upstream); servers without auth ignore this one (vLLM's
# documented placeholder).
_NO_KEY = "EMPTY"
_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}


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


class _Reply:
    """A reply in flight, so that :meth:`OpenAIEngine.close` can end it as cancelled."""

    __slots__ = ("cancelled", "extra", "messages")

    def __init__(self, extra: dict[str, Any], messages: list[dict[str, Any]] | None = None) -> None:
        self.cancelled = False
        self.extra = extra  # request fields beyond the messages and parameters
        self.messages = messages  # the client's own messages, when its tools go upstream


def _response_format(json_schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """The upstream request's structured-output field, as OpenAI's API spells it."""
    if json_schema is None:
        return {}
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": dict(json_schema), "strict": True},
        }
    }


class OpenAIEngine:
    """Implements the Engine protocol over an OpenAI-compatible ``/v1/chat/completions``.

    Tools go upstream as they came (:mod:`chatbot.engine.tool_request`): the upstream's chat
    template and tool parser know its model best.
    """

    supports_native_tools = True

    def __init__(self, settings: EngineSettings) -> None:
        if not settings.openai_base_url:
            raise ConfigurationError(
                "CHATBOT_ENGINE=openai needs CHATBOT_OPENAI_BASE_URL (e.g. http://vllm:8000/v1)"
            )
        self._settings = settings
        self._root = api_root(settings.openai_base_url)
        self._model: str | None = None if settings.model == "embedded" else settings.model
        self._window = settings.context_window or DEFAULT_CONTEXT_WINDOW
        self._loaded = False
        self._load_lock = threading.Lock()
        self._lock = threading.Lock()  # guards the two collections below, shared by loops
        self._clients: dict[
            asyncio.AbstractEventLoop, tuple[openai.AsyncOpenAI, AsyncGenerator[None]]
        ] = {}
        self._active: set[_Reply] = set()
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def model_id(self) -> str:
        self.load()
        assert self._model is not None
        return self._model

    @property
    def context_window(self) -> int:
        return self._window

    @property
    def base_url(self) -> str:
        return self._root

    def load(self) -> None:
        """Learn the model name (and vLLM's window) from the upstream's /v1/models; blocks."""
        with self._load_lock:
            if self._loaded:
                return
            with openai.OpenAI(**self._client_args(httpx.Client, httpx.HTTPTransport)) as client:
                try:
                    cards = list(client.models.list().data)
                except openai.OpenAIError as exc:
                    raise _request_error(exc, self._root) from exc
                except (ValueError, TypeError, AttributeError):
                    raise UpstreamError(
                        f"{self._root}/models did not answer a model list"
                    ) from None
            if self._model is None:
                if not cards or not isinstance(getattr(cards[0], "id", None), str):
                    raise UpstreamError(
                        f"{self._root}/models lists no model; "
                        "set CHATBOT_MODEL to the upstream's name"
                    )
                self._model = cards[0].id
            card = next((c for c in cards if getattr(c, "id", None) == self._model), None)
            upstream_window = getattr(card, "max_model_len", None)  # vLLM reports it
            if self._settings.context_window is None and isinstance(upstream_window, int):
                self._window = max(16, upstream_window)
            self._loaded = True
        logger.info("openai engine: model %s at %s", self._model, self._root)

    async def generate(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        json_schema: Mapping[str, Any] | None = None,
        tools: ToolRequest | None = None,
    ) -> AsyncGenerator[Chunk]:
        """Stream the upstream's reply; its error answers raise before the first chunk.

        A ``json_schema`` goes upstream as a strict ``response_format``: the upstream enforces it.
        ``tools`` go upstream unchanged with the messages in OpenAI's shape, and a forced call
        is the upstream's to enforce (``json_schema``, the call's schema then, is not sent); the
        calls the upstream makes come back as one text chunk in the generic format's JSON
        (:func:`calls_as_text`).
        """
        if not messages:
            raise InvalidRequestError("messages must not be empty", param="messages")
        if not self._loaded:
            await asyncio.to_thread(self.load)
        prompt = _estimate_tokens(messages)
        native: list[dict[str, Any]] | None = None
        if tools is not None:
            if tools.forces_call:  # the upstream enforces the call through tool_choice
                json_schema = None
            native = [dict(message) for message in tools.messages]
        extra = _response_format(json_schema)
        if tools is not None:
            extra.update(tools.fields())
        reply = _Reply(extra, native)
        with self._lock:
            self._active.add(reply)
        try:
            stream = await self._open(messages, params, reply, prompt)
            try:
                yield Chunk("", Usage(prompt_tokens=prompt))
                async for chunk in self._relay(stream, reply, messages, params, prompt):
                    yield chunk
            finally:
                await stream.close()  # the upstream sees the disconnect and stops generating
        finally:
            with self._lock:
                self._active.discard(reply)

    def close(self) -> None:
        """End every reply in flight as cancelled and close each loop's client on its loop."""
        with self._lock:
            active, self._active = list(self._active), set()
            clients, self._clients = self._clients, {}
        for reply in active:
            reply.cancelled = True
        for loop, (_, keeper) in clients.items():
            self._close_on(loop, keeper)

    # -- clients ---------------------------------------------------------------------------
    def _client_args(self, http_client: type[Any], transport: type[Any]) -> dict[str, Any]:
        read = self._settings.openai_timeout_s
        key = self._settings.openai_api_key
        http = http_client(
            timeout=httpx.Timeout(read, connect=min(_CONNECT_TIMEOUT_S, read), pool=read),
            transport=transport(
                retries=CONNECT_RETRIES,
                limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
            ),
        )
        return {
            "base_url": self._root,
            "api_key": key.get_secret_value() if key else _NO_KEY,
            "max_retries": 0,  # see the module docstring: httpx retries what is safe to repeat
            # typed as Any: openai>=2 declares its own httpx fork here, yet accepts httpx's
            "http_client": http,
        }

    async def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        with self._lock:
            held = self._clients.get(loop)
            if held is not None:
                return held[0]
            for gone in [other for other in self._clients if other.is_closed()]:
                del self._clients[gone]  # its loop's shutdown closed it already
            client = openai.AsyncOpenAI(
                **self._client_args(httpx.AsyncClient, httpx.AsyncHTTPTransport)
            )
            keeper = _closed_with_its_loop(client)
            self._clients[loop] = (client, keeper)
        await anext(keeper)  # its first step registers it with this loop's shutdown_asyncgens()
        return client

    def _close_on(self, loop: asyncio.AbstractEventLoop, keeper: AsyncGenerator[None]) -> None:
        if loop.is_closed():
            return
        if not loop.is_running():
            loop.run_until_complete(keeper.aclose())
            return

        def start() -> None:  # runs on the client's loop
            task = loop.create_task(keeper.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(start)

    # -- the request -----------------------------------------------------------------------
    def _request(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        reply: _Reply,
        **stream: Any,
    ) -> dict[str, Any]:
        sent = reply.messages
        if sent is None:
            sent = [{"role": m.role.value, "content": m.content} for m in messages]
        request: dict[str, Any] = {
            "model": self._model,
            "messages": sent,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            **stream,
            **reply.extra,
        }
        if params.stop:
            request["stop"] = list(params.stop)
        if params.seed is not None:
            request["seed"] = params.seed
        if params.ignore_eos:  # not OpenAI's: vLLM and llama-server read it from the body
            request["extra_body"] = {**request.get("extra_body", {}), "ignore_eos": True}
        return request

    async def _open(
        self, messages: Sequence[Message], params: GenerationParams, reply: _Reply, prompt: int
    ) -> openai.AsyncStream[Any]:
        """Send the request; returns once the upstream answered a stream head."""
        request = self._request(
            messages, params, reply, stream=True, stream_options={"include_usage": True}
        )
        try:
            stream: openai.AsyncStream[Any] = await (await self._client()).chat.completions.create(
                **request
            )
        except Exception as exc:
            if reply.cancelled:  # close() shut the client while we were sending
                raise UnavailableError("the openai engine is closing") from exc
            if isinstance(exc, openai.OpenAIError):
                raise _request_error(exc, self._root, prompt, self._window) from exc
            raise
        return stream

    async def _relay(
        self,
        stream: openai.AsyncStream[Any],
        reply: _Reply,
        messages: Sequence[Message],
        params: GenerationParams,
        prompt: int,
    ) -> AsyncIterator[Chunk]:
        """The text chunks and the final chunk of an open stream."""
        response = stream.response
        if "text/event-stream" not in response.headers.get("content-type", ""):
            # the upstream ignored ``stream: true`` and answered one JSON completion
            try:
                await response.aread()
                whole = ChatCompletion.construct(**response.json())
            except (ValueError, TypeError):
                raise UpstreamError("the upstream model server sent an unreadable answer") from None
            for chunk in _whole(whole, prompt):
                yield chunk
            return
        events = pieces = 0
        finish: FinishReason | None = None
        usage: Any = None
        calls = _StreamedCalls()
        try:
            async for event in stream:
                events += 1
                usage = getattr(event, "usage", None) or usage
                for choice in getattr(event, "choices", None) or ():
                    text = getattr(choice.delta, "content", None)
                    if text:
                        pieces += 1
                        yield Chunk(text, Usage(prompt_tokens=prompt, completion_tokens=pieces))
                    calls.add(getattr(choice.delta, "tool_calls", None))
                    if choice.finish_reason:
                        finish = _FINISH.get(str(choice.finish_reason), FinishReason.STOP)
        except Exception as exc:
            if not reply.cancelled:
                raise _stream_error(exc, self._root) from exc
        if reply.cancelled:
            finish = FinishReason.CANCELLED
        elif events == 0:
            async for chunk in self._ask_without_streaming(messages, params, prompt, reply):
                yield chunk
            return
        elif finish is None:
            raise UpstreamError("the upstream model server ended the stream before the reply")
        if calls and not reply.cancelled:
            pieces += 1
            yield Chunk(calls.text(), Usage(prompt_tokens=prompt, completion_tokens=pieces))
        if usage is not None and isinstance(getattr(usage, "prompt_tokens", None), int):
            prompt = usage.prompt_tokens
        counted = getattr(usage, "completion_tokens", None)
        completion = counted if isinstance(counted, int) and counted else pieces
        yield Chunk("", Usage(prompt_tokens=prompt, completion_tokens=completion), finish)

    async def _ask_without_streaming(
        self, messages: Sequence[Message], params: GenerationParams, prompt: int, reply: _Reply
    ) -> AsyncIterator[Chunk]:
        """An empty stream: ask again without streaming to get the upstream's real answer.

        Some servers (llama-cpp-python) report a failure that happens after the stream's head,
        such as a context overflow, by ending the stream with no event at all. Nothing was
        generated or shown, so asking again is safe; the error then comes with its status.
        """
        # A fresh connection: the one that carried the failed stream may be reset by now.
        args = self._client_args(httpx.AsyncClient, httpx.AsyncHTTPTransport)
        async with openai.AsyncOpenAI(**args) as once:
            try:
                whole = await once.chat.completions.create(
                    **self._request(messages, params, reply, stream=False)
                )
            except openai.OpenAIError as exc:
                raise _request_error(exc, self._root, prompt, self._window) from exc
        for chunk in _whole(whole, prompt):
            yield chunk


async def _closed_with_its_loop(client: openai.AsyncOpenAI) -> AsyncGenerator[None]:
    """Parked for the life of its loop: the loop's shutdown (``asyncio.run`` ends, the server
    stops) closes it and with it the client's connections, which no other loop may touch."""
    try:
        yield
    finally:
        await client.close()


def _whole(completion: ChatCompletion, prompt: int) -> list[Chunk]:
    """The text and final chunks of a completion that came in one piece."""
    try:
        choice = completion.choices[0]
        text = str(choice.message.content or "")
        made = [
            (str(call.function.name), str(call.function.arguments or "{}"))
            for call in choice.message.tool_calls or ()
            if call.type == "function"  # not the "custom" tools of OpenAI's newer API
        ]
        if made:  # any text beside the calls is dropped: the API answers calls without content
            text = calls_as_text(made)
        reason = _FINISH.get(str(choice.finish_reason), FinishReason.STOP)
        usage = completion.usage
    except (AttributeError, IndexError, TypeError):
        raise UpstreamError("the upstream model server sent an unreadable answer") from None
    if usage is not None:
        prompt = usage.prompt_tokens
    completion_tokens = usage.completion_tokens if usage is not None else (1 if text else 0)
    final = Usage(prompt_tokens=prompt, completion_tokens=completion_tokens)
    text_chunks = [Chunk(text, Usage(prompt_tokens=prompt, completion_tokens=1))] if text else []
    return [*text_chunks, Chunk("", final, reason)]


class _StreamedCalls:
    """The tool calls of a stream, put together from their deltas (by ``index``).

    OpenAI streams a call's id, type and name first and then its arguments in pieces; the whole
    calls go on as one text chunk at the end, which the API layer answers as ``tool_calls``.
    """

    def __init__(self) -> None:
        self._names: dict[int, str] = {}
        self._arguments: dict[int, list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._names)

    def add(self, deltas: Any) -> None:
        for delta in deltas or ():
            index = getattr(delta, "index", None)
            index = index if isinstance(index, int) else len(self._names)
            function = getattr(delta, "function", None)
            name = getattr(function, "name", None)
            if name and self._names.get(index) != name:  # some servers repeat the name
                self._names[index] = self._names.get(index, "") + str(name)
            arguments = getattr(function, "arguments", None)
            if arguments:
                self._arguments.setdefault(index, []).append(str(arguments))

    def text(self) -> str:
        return calls_as_text(
            [
                (name, "".join(self._arguments.get(index, ())) or "{}")
                for index, name in sorted(self._names.items())
            ]
        )


def _request_error(
    exc: openai.OpenAIError, where: str, prompt_tokens: int = 0, window: int = 0
) -> ChatbotError:
    """An error of the client before the stream: the upstream's status, a timeout, no route."""
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeoutError(f"the upstream model server at {where} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return UnavailableError(f"cannot reach the upstream model server at {where}")
    if not isinstance(exc, openai.APIStatusError):
        return UpstreamError(f"the upstream model server at {where} answered badly: {exc}")
    status = exc.status_code
    message = _upstream_message(exc.body)
    said = f": {message}" if message else ""
    if isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError)):
        if exc.code == "context_length_exceeded":
            return ContextOverflowError(
                message or "the prompt does not fit the upstream's context window",
                prompt_tokens=prompt_tokens,
                context_window=window,
            )
        return InvalidRequestError(
            message or "the upstream model server rejected the request",
            param=exc.param,
            code=exc.code,
        )
    if isinstance(exc, openai.RateLimitError):
        return OverloadedError(
            f"the upstream model server is overloaded{said}",
            retry_after_s=_retry_after(exc.response.headers.get("retry-after")),
        )
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return UpstreamError(
            f"the upstream model server at {where} refused our credentials ({status}); "
            "check CHATBOT_OPENAI_API_KEY"
        )
    if isinstance(exc, openai.NotFoundError):
        return UpstreamError(
            f"the upstream model server at {where} answered 404{said}; "
            "check CHATBOT_OPENAI_BASE_URL and CHATBOT_MODEL"
        )
    if status == 413:
        return PayloadTooLargeError(f"the upstream model server found the request too large{said}")
    if status == 503:
        return UnavailableError(f"the upstream model server is unavailable{said}")
    if status == 504:
        return UpstreamTimeoutError(f"the upstream model server timed out{said}")
    return UpstreamError(f"the upstream model server answered {status}{said}")


def _stream_error(exc: Exception, where: str) -> ChatbotError:
    """A failure while reading the stream: text may have gone out already, so always 5xx."""
    if isinstance(exc, ChatbotError):
        return exc
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
        return UpstreamTimeoutError(f"the upstream model server at {where} did not answer in time")
    if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
        # openai>=2 wraps a broken stream in APIConnectionError, 1.x lets httpx's error through
        return UpstreamError(f"the connection to the upstream model server at {where} failed")
    if isinstance(exc, openai.APIError):  # an ``error`` object inside the stream
        return UpstreamError(f"the upstream model server failed mid-reply: {exc.message}")
    if isinstance(exc, ValueError):  # a ``data:`` line that is not JSON
        return UpstreamError("the upstream model server sent a malformed stream chunk")
    logger.error("the upstream stream failed", exc_info=exc)
    return UpstreamError(f"reading the reply from the upstream model server at {where} failed")


def _upstream_message(body: object) -> str:
    """The upstream's own words: OpenAI's ``error.message`` or FastAPI's ``detail``."""
    if isinstance(body, dict):
        body = body.get("message") or body.get("detail") or ""
    return str(body)[:2000] if body else ""


def _retry_after(value: str | None) -> int:
    """The upstream's Retry-After in whole seconds, passed on as it came (at least 1)."""
    try:
        return max(1, int(float(value or "1")))
    except ValueError:
        return 1


def _estimate_tokens(messages: Sequence[Message]) -> int:
    """About four characters a token; replaced by the upstream's count when it reports usage."""
    return sum(len(m.content) // 4 + 4 for m in messages)
