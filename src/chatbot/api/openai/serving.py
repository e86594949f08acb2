"""The logic of ``/v1/chat/completions``: checking a request, running it, shaping the answer."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sse_starlette import ServerSentEvent

from chatbot.api.error_handlers import body_of
from chatbot.api.limits import check_messages
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
from chatbot.api.streaming import (
    DONE,
    compact,
    event_stream,
    one_shot_events,
    one_shot_text,
    wait_comment,
)
from chatbot.config import LimitSettings
from chatbot.domain import FinishReason, GenerationParams, Message, ReplyStats, Role
from chatbot.errors import InvalidRequestError
from chatbot.service.params import resolve_params
from chatbot.service.runner import Reply, ReplyRunner, StopReason
from chatbot.service.waiting import WaitState

logger = logging.getLogger(__name__)

ENDPOINT = "chat_completions"
_ROLES = {"system": Role.SYSTEM, "developer": Role.SYSTEM, "user": Role.USER}


def list_models(model: str, created: int) -> ModelList:
    return ModelList(data=[ModelCard(id=model, created=created)])


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


def to_params(request: ChatCompletionRequest, limits: LimitSettings) -> GenerationParams:
    """OpenAI's fields as our parameters; the caps are applied by the one resolver."""
    asked: int | None = request.max_tokens
    param = "max_tokens"
    if request.max_completion_tokens is not None:
        asked, param = request.max_completion_tokens, "max_completion_tokens"
    if asked is not None and asked < 1:
        raise InvalidRequestError(f"{param} must be at least 1 (got {asked})", param=param)
    stop: tuple[str, ...] = ()
    if isinstance(request.stop, str):
        stop = (request.stop,)
    elif request.stop is not None:
        stop = tuple(request.stop)
    fields: dict[str, Any] = {
        # OpenAI's defaults: temperature 1, top_p 1.
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "stop": stop,
        "seed": request.seed,
    }
    try:
        params = GenerationParams(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "stop"
        raise InvalidRequestError(f"{name}: {first['msg']}", param=name) from None
    if asked is not None:  # checked against the cap by the resolver, not the domain's bound
        params = params.model_copy(update={"max_new_tokens": asked})
    return resolve_params(params, limits, param=param)


def finish_reason(reason: FinishReason | None) -> str:
    return "length" if reason is FinishReason.LENGTH else "stop"


def usage_of(stats: ReplyStats) -> UsageInfo:
    return UsageInfo(
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        total_tokens=stats.prompt_tokens + stats.completion_tokens,
    )


async def create_chat_completion(
    request: ChatCompletionRequest,
    http: Request,
    runner: ReplyRunner,
    limits: LimitSettings,
    model: str,
    heartbeat_s: float,
) -> Response:
    check_supported(request)
    messages = to_messages(request)
    check_messages(messages, limits)
    params = to_params(request, limits)
    reply = runner.start(messages, params, endpoint=ENDPOINT)  # 429 here, before any answer
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    try:
        await reply.wait_started()  # 400 / 503 while a plain status is still possible
    except BaseException:
        reply.stop(StopReason.DISCONNECT)
        raise
    if request.stream:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        body = _stream(reply, completion_id, created, model, include_usage)
        return event_stream(body, heartbeat_s)
    result = await one_shot_text(reply, http)
    if isinstance(result, Response):
        return result
    text, end = result
    completion = ChatCompletion(
        id=completion_id,
        created=created,
        model=model,
        choices=[
            Choice(
                message=AssistantMessage(content=text),
                finish_reason=finish_reason(end.stats.finish_reason),
            )
        ],
        usage=usage_of(end.stats),
    )
    return JSONResponse(completion.model_dump(mode="json"))


async def _stream(
    reply: Reply, completion_id: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str | ServerSentEvent]:
    def chunk(delta: Delta, reason: str | None = None) -> str:
        body = ChatCompletionChunk(
            id=completion_id,
            created=created,
            model=model,
            choices=[ChunkChoice(delta=delta, finish_reason=reason)],
        )
        payload = body.model_dump(mode="json")
        # OpenAI leaves unset delta fields out ({"content": "..."}), not null.
        payload["choices"][0]["delta"] = delta.model_dump(mode="json", exclude_none=True)
        return compact(payload)

    sent_role = False
    async for item in one_shot_events(reply):
        if isinstance(item, WaitState):  # queued or loading: a comment before the first chunk
            yield wait_comment(item)
            continue
        if not sent_role:
            sent_role = True
            yield chunk(Delta(role="assistant", content=""))
        if isinstance(item, str):
            yield chunk(Delta(content=item))
            continue
        if item.error is not None:
            yield compact(body_of(item.error))
            return
        yield chunk(Delta(), finish_reason(item.stats.finish_reason))
        if include_usage:
            final = ChatCompletionChunk(
                id=completion_id,
                created=created,
                model=model,
                choices=[],
                usage=usage_of(item.stats),
            )
            yield compact(final.model_dump(mode="json"))
        yield DONE
