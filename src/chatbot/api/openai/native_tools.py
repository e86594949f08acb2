"""A request's tools as they came, for an engine that passes them on natively.

The generic format (:mod:`.tools`) is for models that only see a prompt we write. An engine
with ``supports_native_tools`` (the ``openai`` engine) instead gets the client's ``tools``,
``tool_choice`` and messages unchanged (as sent: fields the client left out stay out), so the
upstream's own chat template and tool parser handle them. The older ``functions`` /
``function_call`` are sent in the newer shape, which every current server takes.
"""

from __future__ import annotations

from typing import Any

from chatbot.api.openai.protocol import ChatCompletionRequest, FunctionName
from chatbot.engine.tool_request import ToolRequest


def native_tool_request(request: ChatCompletionRequest) -> ToolRequest | None:
    """The request's tool fields and messages as sent, or None when it has nothing of tools."""
    if not (request.tools or request.functions or _history_has_tools(request)):
        return None
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
        messages=tuple(m.model_dump(mode="json", exclude_unset=True) for m in request.messages),
        parallel_tool_calls=request.parallel_tool_calls,
    )


def _history_has_tools(request: ChatCompletionRequest) -> bool:
    return any(
        m.role in ("tool", "function") or m.tool_calls or m.function_call is not None
        for m in request.messages
    )
