"""The logic of ``/v1/chat/completions``: checking a request, running it, shaping the answer."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.types import Receive

from chatbot.api import sse
from chatbot.api.error_handlers import body_of, error_body
from chatbot.api.generation import EngineCall, Finished, Ping, Text, run_to_end
from chatbot.api.limits import check_messages, resolve_max_tokens
from chatbot.api.openai.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    UsageInfo,
)
from chatbot.api.state import Runtime
from chatbot.domain import FinishReason, GenerationParams, Message, Role, Usage
from chatbot.errors import ChatbotError, InvalidRequestError

logger = logging.getLogger(__name__)

ENDPOINT = "chat_completions"
_ROLES = {"system": Role.SYSTEM, "developer": Role.SYSTEM, "user": Role.USER}


def list_models(runtime: Runtime) -> ModelList:
    return ModelList(data=[ModelCard(id=model_name(runtime), created=_started(runtime))])


def model_name(runtime: Runtime) -> str:
    if runtime.engine is not None:
        return runtime.engine.model_id
    return runtime.engine_settings.model


def _started(runtime: Runtime) -> int:
    return int(time.time())


def check_supported(request: ChatCompletionRequest) -> None:
    """Refuse, by name, what we would otherwise silently not do."""
    refusals: list[tuple[str, bool, str]] = [
        ("n", request.n is not None and request.n != 1, "only n=1 is supported"),
        ("tools", bool(request.tools), "tool calling is not supported"),
        ("tool_choice", request.tool_choice not in (None, "none"), "tool calling is not supported"),
        ("functions", bool(request.functions), "function calling is not supported"),
        (
            "function_call",
            request.function_call not in (None, "none"),
            "function calling is not supported",
        ),
        ("logprobs", bool(request.logprobs), "logprobs are not supported"),
        ("top_logprobs", request.top_logprobs is not None, "logprobs are not supported"),
        (
            "response_format",
            request.response_format is not None
            and request.response_format.get("type", "text") != "text",
            "only response_format type 'text' is supported (no JSON mode)",
        ),
        (
            "frequency_penalty",
            bool(request.frequency_penalty),
            "frequency_penalty is not supported",
        ),
        ("presence_penalty", bool(request.presence_penalty), "presence_penalty is not supported"),
        ("logit_bias", bool(request.logit_bias), "logit_bias is not supported"),
    ]
    for param, refused, why in refusals:
        if refused:
            raise InvalidRequestError(f"{param}: {why}", param=param, code="unsupported_parameter")


def to_messages(request: ChatCompletionRequest) -> list[Message]:
    """Our messages: every system/developer message joined into one system prompt first."""
    system: list[str] = []
    turns: list[Message] = []
    for index, message in enumerate(request.messages):
        text = _text_of(message, index)
        if message.role in ("system", "developer"):
            system.append(text)
        elif message.role == "user":
            turns.append(Message.user(text))
        else:
            turns.append(Message.assistant(text))
    if system:
        turns.insert(0, Message.system("\n\n".join(system)))
    return turns


def _text_of(message: ChatMessage, index: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for part_index, part in enumerate(content):
        if part.type != "text" or part.text is None:
            param = f"messages[{index}].content[{part_index}]"
            raise InvalidRequestError(
                f"{param}: only text content parts are supported (got type {part.type!r})",
                param=param,
                code="unsupported_content",
            )
        texts.append(part.text)
    return "".join(texts)


def to_params(request: ChatCompletionRequest, runtime: Runtime) -> GenerationParams:
    if request.max_completion_tokens is not None:
        max_new = resolve_max_tokens(
            request.max_completion_tokens, runtime.limits, "max_completion_tokens"
        )
    else:
        max_new = resolve_max_tokens(request.max_tokens, runtime.limits, "max_tokens")
    stop: tuple[str, ...] = ()
    if isinstance(request.stop, str):
        stop = (request.stop,)
    elif request.stop is not None:
        stop = tuple(request.stop)
    fields: dict[str, Any] = {
        "max_new_tokens": max_new,
        # OpenAI's defaults: temperature 1, top_p 1.
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "stop": stop,
        "seed": request.seed,
    }
    try:
        return GenerationParams(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "stop"
        param = {"max_new_tokens": "max_tokens"}.get(name, name)
        raise InvalidRequestError(f"{param}: {first['msg']}", param=param) from None


def finish_reason(reason: FinishReason) -> str:
    return "length" if reason is FinishReason.LENGTH else "stop"


def usage_of(usage: Usage) -> UsageInfo:
    return UsageInfo(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


async def create_chat_completion(
    request: ChatCompletionRequest, runtime: Runtime, receive: Receive
) -> Response:
    check_supported(request)
    messages = to_messages(request)
    check_messages(messages, runtime.limits)
    params = to_params(request, runtime)
    call = EngineCall(runtime, messages, params, ENDPOINT)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = model_name(runtime)
    if request.stream:
        await call.admit()  # 429 / 400 / 503 while a plain status is still possible
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        body = _stream(call, completion_id, created, model, include_usage)
        return sse.event_stream(body)
    result = await run_to_end(call, receive)
    if result is None:
        return Response(status_code=499)  # the client left; nobody reads this
    text, outcome = result
    completion = ChatCompletion(
        id=completion_id,
        created=created,
        model=model,
        choices=[
            Choice(
                message=AssistantMessage(content=text),
                finish_reason=finish_reason(outcome.finish_reason),
            )
        ],
        usage=usage_of(outcome.usage),
    )
    return JSONResponse(completion.model_dump(mode="json"))


async def _stream(
    call: EngineCall, completion_id: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[bytes]:
    def chunk(delta: Delta, reason: str | None = None) -> bytes:
        body = ChatCompletionChunk(
            id=completion_id,
            created=created,
            model=model,
            choices=[ChunkChoice(delta=delta, finish_reason=reason)],
        )
        payload = body.model_dump(mode="json")
        # OpenAI leaves unset delta fields out ({"content": "..."}), not null.
        payload["choices"][0]["delta"] = delta.model_dump(mode="json", exclude_none=True)
        return sse.data(payload)

    try:
        sent_role = False
        async for item in call.items():
            if isinstance(item, Ping):
                yield sse.PING
                continue
            if not sent_role:
                sent_role = True
                yield chunk(Delta(role="assistant", content=""))
            if isinstance(item, Text):
                yield chunk(Delta(content=item.text))
            elif isinstance(item, Finished):
                yield chunk(Delta(), finish_reason(item.outcome.finish_reason))
                if include_usage:
                    final = ChatCompletionChunk(
                        id=completion_id,
                        created=created,
                        model=model,
                        choices=[],
                        usage=usage_of(item.outcome.usage),
                    )
                    yield sse.data(final.model_dump(mode="json"))
                yield sse.DONE
    except ChatbotError as exc:
        yield sse.data(body_of(exc))
    except Exception:
        logger.exception("a completion stream failed")
        yield sse.data(error_body("the server failed while streaming", "server_error"))
    finally:
        call.close()
