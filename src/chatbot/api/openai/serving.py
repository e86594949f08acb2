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
from chatbot.api.openai.native_tools import has_tools, native_tool_request
from chatbot.api.openai.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    ToolCall,
    ToolCallDelta,
    UsageInfo,
)
from chatbot.api.openai.response_format import json_schema_of
from chatbot.api.openai.tools import ToolPlan, history_text, plan_tools, starts_like_a_call
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
from chatbot.engine.constraints import compile_json_schema
from chatbot.engine.tool_request import ToolRequest, takes_native_tools
from chatbot.errors import InvalidRequestError
from chatbot.service.params import resolve_params
from chatbot.service.runner import Reply, ReplyRunner, StopReason
from chatbot.service.waiting import WaitState

logger = logging.getLogger(__name__)

ENDPOINT = "chat_completions"
_ROLES = {"system": Role.SYSTEM, "developer": Role.SYSTEM, "user": Role.USER}


def check_supported(request: ChatCompletionRequest) -> None:
    """Refuse, by name, what we would otherwise silently not do."""
    refusals: list[tuple[str, bool, str]] = [
        ("n", request.n is not None and request.n != 1, "only n=1 is supported"),
        ("logprobs", bool(request.logprobs), "logprobs are not supported"),
        ("top_logprobs", request.top_logprobs is not None, "logprobs are not supported"),
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


def to_messages(request: ChatCompletionRequest, tools: ToolPlan | None = None) -> list[Message]:
    """Our messages: every system/developer message joined into one system prompt first.

    Tool results and the calls of earlier assistant turns read as the generic tool format
    (:mod:`.tools`) says; the tools themselves are described at the end of the system prompt.
    """
    return to_turns(request, tools)[0]


def to_turns(
    request: ChatCompletionRequest, tools: ToolPlan | None = None
) -> tuple[list[Message], list[dict[str, Any]]]:
    """Our messages, and each of them in OpenAI's shape (one for one), for native tools.

    The shapes keep what the generic format rewrites (assistant ``tool_calls``, ``tool``
    messages with their ``tool_call_id``), as the client sent it; the system prompt is the
    same joined one.
    """
    system: list[str] = []
    turns: list[Message] = []
    shapes: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        text = _text_of(message, index)
        if message.role in ("system", "developer"):
            system.append(text)
            continue
        shape = message.model_dump(mode="json", exclude_unset=True, exclude={"content"})
        shape["content"] = None if message.content is None else text
        shapes.append(shape)
        if message.role == "user":
            turns.append(Message.user(text))
        elif message.role in ("tool", "function"):
            turns.append(Message.user(history_text(message, text)))
        else:
            turns.append(Message.assistant(history_text(message, text)))
    if tools is not None:
        system.append(tools.instructions())
    if system:
        joined = "\n\n".join(system)
        turns.insert(0, Message.system(joined))
        shapes.insert(0, {"role": "system", "content": joined})
    return turns, shapes


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
        "ignore_eos": request.ignore_eos,
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


def _call_deltas(calls: list[ToolCall], *, legacy: bool) -> list[Delta]:
    """Each call as OpenAI streams it: id, type and name first, then the arguments."""
    if legacy:
        function = calls[0].function
        return [
            Delta(function_call=FunctionCallDelta(name=function.name, arguments="")),
            Delta(function_call=FunctionCallDelta(arguments=function.arguments)),
        ]
    deltas: list[Delta] = []
    for index, call in enumerate(calls):
        head = FunctionCallDelta(name=call.function.name, arguments="")
        first = ToolCallDelta(index=index, id=call.id, type="function", function=head)
        deltas.append(Delta(tool_calls=[first]))
        body = FunctionCallDelta(arguments=call.function.arguments)
        deltas.append(Delta(tool_calls=[ToolCallDelta(index=index, function=body)]))
    return deltas


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
    tools = plan_tools(request, limits.max_message_chars)
    json_schema = json_schema_of(request.response_format)
    if tools is not None and tools.forced:
        json_schema = tools.json_schema()  # a forced call is the reply's format
        if json_schema is not None:  # checked here, so a 400 names the tools, not the format
            compile_json_schema(json_schema, param="tools")
    # An engine that takes tools natively (an upstream, a chat template that renders tools)
    # gets them as they came; the others get the generic format in the system prompt.
    native: ToolRequest | None = None
    if takes_native_tools(runner.engine) and has_tools(request):
        messages, shapes = to_turns(request)
        native = native_tool_request(request, shapes)
    else:
        messages = to_messages(request, tools)
    check_messages(messages, limits)
    params = to_params(request, limits)
    # 429 here, before any answer
    reply = runner.start(messages, params, endpoint=ENDPOINT, json_schema=json_schema, tools=native)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    try:
        await reply.wait_started()  # 400 / 503 while a plain status is still possible
    except BaseException:
        reply.stop(StopReason.DISCONNECT)
        raise
    if request.stream:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        body = _stream(reply, completion_id, created, model, include_usage, tools)
        return event_stream(body, heartbeat_s)
    result = await one_shot_text(reply, http)
    if isinstance(result, Response):
        return result
    text, end = result
    message = AssistantMessage(content=text)
    reason = finish_reason(end.stats.finish_reason)
    calls = tools.parse(text) if tools is not None else None
    if tools is not None and calls:
        if tools.legacy:
            message = AssistantMessage(content=None, function_call=calls[0].function)
            reason = "function_call"
        else:
            message = AssistantMessage(content=None, tool_calls=calls)
            reason = "tool_calls"
    completion = ChatCompletion(
        id=completion_id,
        created=created,
        model=model,
        choices=[Choice(message=message, finish_reason=reason)],
        usage=usage_of(end.stats),
    )
    return JSONResponse(completion.model_dump(mode="json"))


class _ToolCallSplitter:
    """Streams plain text at once and holds back what may be a tool call until the end.

    A forced call is held whole; with ``auto``, text is held only while it could still be a
    call (nothing yet, or it starts like JSON), as vLLM's tool parsers do.
    """

    def __init__(self, tools: ToolPlan) -> None:
        self._tools = tools
        self._held: list[str] = []
        self._released = False

    def feed(self, piece: str) -> str:
        """The text to send now ("" while holding)."""
        if self._released:
            return piece
        self._held.append(piece)
        if self._tools.forced or starts_like_a_call("".join(self._held)):
            return ""
        self._released = True
        return "".join(self._held)

    def finish(self) -> tuple[list[ToolCall] | None, str]:
        """The calls the held text makes, or the held text to send as content."""
        held = "".join(self._held) if not self._released else ""
        calls = self._tools.parse(held) if held else None
        return calls, ("" if calls else held)


async def _stream(
    reply: Reply,
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
    tools: ToolPlan | None = None,
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
    splitter = _ToolCallSplitter(tools) if tools is not None else None
    async for item in one_shot_events(reply):
        if isinstance(item, WaitState):  # queued or loading: a comment before the first chunk
            yield wait_comment(item)
            continue
        if not sent_role:
            sent_role = True
            yield chunk(Delta(role="assistant", content=""))
        if isinstance(item, str):
            text = splitter.feed(item) if splitter is not None else item
            if text:
                yield chunk(Delta(content=text))
            continue
        if item.error is not None:
            yield compact(body_of(item.error))
            return
        reason = finish_reason(item.stats.finish_reason)
        if splitter is not None and tools is not None:
            calls, rest = splitter.finish()
            if rest:
                yield chunk(Delta(content=rest))
            if calls:
                for delta in _call_deltas(calls, legacy=tools.legacy):
                    yield chunk(delta)
                reason = "function_call" if tools.legacy else "tool_calls"
        yield chunk(Delta(), reason)
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
