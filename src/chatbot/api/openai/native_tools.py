"""A request's tools as they came, for an engine that takes them natively.

The generic format (:mod:`.tools`) is for models that only see a prompt we write. An engine
with ``supports_native_tools`` (the ``openai`` engine; a local model whose chat template renders
tools) instead gets the client's ``tools`` and ``tool_choice`` unchanged (as sent: fields the
client left out stay out) and the messages in OpenAI's shape, so the upstream's or the
template's own tool format is used. The older ``functions`` / ``function_call`` are sent in the
newer shape, which every current server and template takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chatbot.api.openai.protocol import ChatCompletionRequest, FunctionName
from chatbot.engine.tool_request import ToolRequest


def has_tools(request: ChatCompletionRequest) -> bool:
    """Whether a request has tools, or a history with calls or results, to pass on."""
    return bool(request.tools or request.functions) or any(
        m.role in ("tool", "function") or m.tool_calls or m.function_call is not None
        for m in request.messages
    )


def native_tool_request(
    request: ChatCompletionRequest, shapes: Sequence[dict[str, Any]]
) -> ToolRequest:
    """The request's tool fields as sent, with its messages in OpenAI's shape (``shapes``)."""
    if request.functions:
        tools = tuple(
            {"type": "function", "function": f.model_dump(mode="json", exclude_unset=True)}
            for f in request.functions
        )
        choice: Any = request.function_call
        if isinstance(choice, FunctionName):
            choice = {"type": "function", "function": {"name": choice.name}}
    else:
        tools = tuple(t.model_dump(mode="json", exclude_unset=True) for t in request.tools or ())
        choice = request.tool_choice
        if choice is not None and not isinstance(choice, str):
            choice = choice.model_dump(mode="json", exclude_unset=True)
    return ToolRequest(
        tools=tools,
        tool_choice=choice,
        messages=tuple(shapes),
        parallel_tool_calls=request.parallel_tool_calls,
    )
