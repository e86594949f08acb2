"""The ``openai`` engine: any OpenAI-compatible model server (vLLM, TGI, Ollama, llama.cpp's
server, another ``chatbot serve``) answers, and we pass its stream through chunk by chunk.

The upstream owns the model, the batching and the context window; this engine owns the
connection: one streamed request per reply, read by a producer thread that pushes text into the
:class:`Generation`, closed as soon as the reader cancels.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

from chatbot.config import EngineSettings
from chatbot.domain import FinishReason, GenerationParams, Message, Usage
from chatbot.engine.base import Generation, GenerationOutcome
from chatbot.engine.upstream import (
    StreamChunk,
    api_root,
    connection_error,
    parse_stream,
    status_error,
)
from chatbot.errors import (
    ChatbotError,
    ConfigurationError,
    InvalidRequestError,
    UpstreamError,
)

logger = logging.getLogger(__name__)

# The upstream fits the prompt into its own window; this only bounds what we claim to accept.
DEFAULT_CONTEXT_WINDOW = 131_072
CONNECT_ATTEMPTS = 4
BACKOFF_S = 0.25
_CONNECT_TIMEOUT_S = 10.0


class _UpstreamGeneration(Generation):
    """A generation whose cancel also closes the upstream request, so the upstream stops too."""

    def __init__(self, response: httpx.Response, *, prompt_tokens: int) -> None:
        super().__init__(prompt_tokens=prompt_tokens)
        self._response = response

    def watch(self, response: httpx.Response) -> None:
        """The request that cancel closes from now on."""
        self._response = response
        if self.cancelled:
            response.close()

    def cancel(self) -> None:
        super().cancel()
        try:  # unblocks the producer thread even while the upstream sends nothing
            self._response.close()
        except Exception:  # closing from another thread is best effort; the reader checks too
            logger.debug("closing the upstream response on cancel failed", exc_info=True)


class OpenAIEngine:
    """Implements the Engine protocol over an OpenAI-compatible ``/v1/chat/completions``."""

    def __init__(self, settings: EngineSettings) -> None:
        if not settings.openai_base_url:
            raise ConfigurationError(
                "CHATBOT_ENGINE=openai needs CHATBOT_OPENAI_BASE_URL (e.g. http://vllm:8000/v1)"
            )
        self._settings = settings
        self._root = api_root(settings.openai_base_url)
        self._model: str | None = None if settings.model == "embedded" else settings.model
        self._window = settings.context_window or DEFAULT_CONTEXT_WINDOW
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._active: set[Generation] = set()

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
        """Open the connection pool and learn the model name from the upstream's /v1/models."""
        with self._lock:
            if self._client is not None:
                return
            client = self._new_client()
            try:
                self._learn_model(client)
            except BaseException:
                client.close()
                raise
            self._client = client
        logger.info("openai engine: model %s at %s", self._model, self._root)

    def start(self, messages: Sequence[Message], params: GenerationParams) -> Generation:
        """Send the request and wait for the upstream's answer head; then stream in a thread.

        Errors the upstream answers before any text (a bad request, a context overflow, an
        overload) raise here. It blocks for one round trip, so call it off the event loop.
        """
        if not messages:
            raise InvalidRequestError("messages must not be empty", param="messages")
        self.load()
        payload = self._payload(messages, params)
        response = self._open(payload)
        generation = _UpstreamGeneration(response, prompt_tokens=_estimate_tokens(messages))
        with self._lock:
            self._active.add(generation)
        thread = threading.Thread(
            target=self._pump,
            args=(generation, response, payload),
            name="openai-stream",
            daemon=True,
        )
        thread.start()
        return generation

    def close(self) -> None:
        """Cancel every reply in flight and close the connection pool."""
        with self._lock:
            active, self._active = list(self._active), set()
            client, self._client = self._client, None
        for generation in active:
            generation.cancel()
        if client is not None:
            client.close()

    # -- the request -----------------------------------------------------------------------
    def _new_client(self) -> httpx.Client:
        key = self._settings.openai_api_key
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        read = self._settings.openai_timeout_s
        return httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(read, connect=min(_CONNECT_TIMEOUT_S, read), pool=read),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
        )

    def _learn_model(self, client: httpx.Client) -> None:
        response = self._send(client, client.build_request("GET", f"{self._root}/models"))
        try:
            response.read()
        except httpx.TransportError as exc:
            raise connection_error(exc, self._root) from exc
        finally:
            response.close()
        try:
            cards = [c for c in response.json().get("data", []) if isinstance(c, dict)]
        except (ValueError, AttributeError):
            raise UpstreamError(f"{self._root}/models did not answer a model list") from None
        if self._model is None:
            if not cards or not isinstance(cards[0].get("id"), str):
                raise UpstreamError(
                    f"{self._root}/models lists no model; set CHATBOT_MODEL to the upstream's name"
                )
            self._model = str(cards[0]["id"])
        card = next((c for c in cards if c.get("id") == self._model), None)
        upstream_window = card.get("max_model_len") if card else None  # vLLM reports it
        if self._settings.context_window is None and isinstance(upstream_window, int):
            self._window = max(16, upstream_window)

    def _payload(self, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": m.role.value, "content": m.content} for m in messages],
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.stop:
            payload["stop"] = list(params.stop)
        if params.seed is not None:
            payload["seed"] = params.seed
        return payload

    def _open(self, payload: dict[str, Any]) -> httpx.Response:
        client = self._client
        if client is None:
            raise UpstreamError("the openai engine is closed")
        request = client.build_request(
            "POST",
            f"{self._root}/chat/completions",
            content=json.dumps(payload),
            headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        )
        return self._send(client, request)

    def _send(self, client: httpx.Client, request: httpx.Request) -> httpx.Response:
        """Send with retries only where safe: the connection was refused, so nothing was sent."""
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError as exc:
                if attempt + 1 < CONNECT_ATTEMPTS:
                    time.sleep(BACKOFF_S * 2**attempt)
                    continue
                raise connection_error(exc, self._root) from exc
            except httpx.TransportError as exc:
                raise connection_error(exc, self._root) from exc
            if response.status_code < 400:
                return response
            try:
                response.read()
            except httpx.TransportError:
                pass
            finally:
                response.close()
            raise status_error(response, self._root)
        raise AssertionError("unreachable")

    # -- the producer thread -----------------------------------------------------------------
    def _pump(
        self, generation: _UpstreamGeneration, response: httpx.Response, payload: dict[str, Any]
    ) -> None:
        try:
            outcome = self._relay(generation, response, payload)
        except Exception as exc:  # every failure reaches the reader, never a silent thread death
            if generation.cancelled:
                outcome = GenerationOutcome(
                    FinishReason.CANCELLED, Usage(prompt_tokens=generation.prompt_tokens)
                )
                generation.push(outcome)
            else:
                generation.push(_as_chatbot_error(exc, self._root))
        else:
            generation.push(outcome)
        finally:
            response.close()
            with self._lock:
                self._active.discard(generation)

    def _relay(
        self, generation: _UpstreamGeneration, response: httpx.Response, payload: dict[str, Any]
    ) -> GenerationOutcome:
        """Push each text piece as it arrives; return how the reply ended."""
        if "text/event-stream" not in response.headers.get("content-type", ""):
            return self._relay_whole(generation, response)
        events = 0
        pieces = 0
        finish: FinishReason | None = None
        usage: StreamChunk | None = None
        for chunk in parse_stream(response.iter_lines()):
            if generation.cancelled:
                break
            if chunk is None:
                continue
            events += 1
            if chunk.text:
                pieces += 1
                generation.push(chunk.text)
            finish = chunk.finish_reason or finish
            if chunk.prompt_tokens is not None or chunk.completion_tokens is not None:
                usage = chunk
        if generation.cancelled:
            finish = FinishReason.CANCELLED
        elif events == 0:
            return self._ask_without_streaming(generation, payload)
        elif finish is None:
            raise UpstreamError("the upstream model server ended the stream before the reply")
        if usage is not None and usage.prompt_tokens is not None:
            generation.prompt_tokens = usage.prompt_tokens
        completion = usage.completion_tokens if usage and usage.completion_tokens else pieces
        return GenerationOutcome(
            finish, Usage(prompt_tokens=generation.prompt_tokens, completion_tokens=completion)
        )

    def _ask_without_streaming(
        self, generation: _UpstreamGeneration, payload: dict[str, Any]
    ) -> GenerationOutcome:
        """An empty stream: ask again without streaming to get the upstream's real answer.

        Some servers (llama-cpp-python) report a failure that happens after the stream's head,
        such as a context overflow, by ending the stream with no event at all. Nothing was
        generated or shown, so asking again is safe; the error then comes with its status.
        """
        whole = {k: v for k, v in payload.items() if k != "stream_options"} | {"stream": False}
        # A fresh connection: the one that carried the failed stream may be reset by now.
        with self._new_client() as once:
            request = once.build_request(
                "POST",
                f"{self._root}/chat/completions",
                content=json.dumps(whole),
                headers={"Content-Type": "application/json"},
            )
            response = self._send(once, request)
            generation.watch(response)
            try:
                return self._relay_whole(generation, response)
            finally:
                response.close()

    def _relay_whole(self, generation: Generation, response: httpx.Response) -> GenerationOutcome:
        """An upstream that ignored ``stream: true`` and answered one JSON completion."""
        response.read()
        try:
            body = response.json()
            choice = body["choices"][0]
            text = str(choice["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError):
            raise UpstreamError("the upstream model server sent an unreadable answer") from None
        if text:
            generation.push(text)
        reason = (
            FinishReason.LENGTH if choice.get("finish_reason") == "length" else (FinishReason.STOP)
        )
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        prompt = usage.get("prompt_tokens", generation.prompt_tokens)
        completion = usage.get("completion_tokens", 1 if text else 0)
        generation.prompt_tokens = int(prompt)
        return GenerationOutcome(reason, Usage(prompt_tokens=prompt, completion_tokens=completion))


def _as_chatbot_error(exc: Exception, where: str) -> ChatbotError:
    if isinstance(exc, ChatbotError):
        return exc
    if isinstance(exc, httpx.TransportError):
        return connection_error(exc, where)
    logger.error("the upstream stream failed", exc_info=exc)
    return UpstreamError(f"reading the reply from the upstream model server at {where} failed")


def _estimate_tokens(messages: Sequence[Message]) -> int:
    """About four characters a token; replaced by the upstream's count when it reports usage."""
    return sum(len(m.content) // 4 + 4 for m in messages)
