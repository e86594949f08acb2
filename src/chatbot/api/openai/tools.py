"""Tool calling in one generic, documented format, for models whatever their chat template.

The request's tools are described in the system prompt (:func:`ToolPlan.instructions`); the
model calls one by answering with nothing but a JSON object::

    {"name": "get_weather", "arguments": {"city": "Paris"}}

or a JSON array of such objects for several calls (calls in a Markdown code fence, or in the
``<tool_call>`` tags that Hermes and Qwen models write, are understood too). A tool's result
goes back to the model as a user turn that starts with ``Tool result``, and an assistant turn
that made calls is shown to the model as the same JSON, so a conversation reads the same way at
every turn.

``tool_choice``: ``auto`` lets the model answer or call (a reply that parses as calls becomes
``tool_calls``); ``none`` leaves the tools out; ``required`` and a named function constrain the
reply to a call by JSON schema (constrained decoding), so even a tiny model makes a valid call.
The older ``functions`` / ``function_call`` fields map onto the same plan and are answered in
their own older shape.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from chatbot.api.openai.protocol import (
    ChatCompletionRequest,
    ChatMessage,
    FunctionCall,
    FunctionDefinition,
    NamedToolChoice,
    ToolCall,
)
from chatbot.errors import InvalidRequestError

# Arguments of a function that declares no parameters: exactly {}.
_NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True)
class ToolPlan:
    """What the request's tools ask of this reply, checked once."""

    functions: tuple[FunctionDefinition, ...]
    forced: bool  # tool_choice required or a named function: the reply must be a call
    named: str | None  # the one function a named tool_choice asks for
    legacy: bool  # asked with functions / function_call: answer with function_call
    single: bool = False  # at most one call (legacy, or parallel_tool_calls false)

    def instructions(self) -> str:
        """The generic format, for the end of the system prompt."""
        listed = "\n".join(json.dumps(_describe(f), ensure_ascii=False) for f in self.functions)
        if self.named is not None:
            must = f"You must call the function {self.named} now."
        elif self.forced:
            must = "You must call one of the functions now."
        else:
            must = "If no function is needed, answer in plain text."
        return (
            "# Tools\n\nYou can call these functions. Each line gives a function's name, what "
            "it does and the JSON schema of its arguments:\n"
            f"{listed}\n\n"
            "To call a function, reply with only a JSON object, nothing before or after it:\n"
            '{"name": "<function name>", "arguments": {<the arguments>}}\n'
            "To call several, reply with a JSON array of such objects. Each result comes back "
            f'in a message that starts with "Tool result". {must}'
        )

    def json_schema(self) -> dict[str, Any] | None:
        """The schema a forced reply must follow: one call of an allowed function."""
        if not self.forced:
            return None
        allowed = [f for f in self.functions if self.named in (None, f.name)]
        options = [
            {
                "type": "object",
                "properties": {
                    "name": {"const": f.name},
                    "arguments": f.parameters or _NO_ARGUMENTS,
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for f in allowed
        ]
        return options[0] if len(options) == 1 else {"anyOf": options}

    def parse(self, text: str) -> list[ToolCall] | None:
        """The calls a reply makes, or None when it is plain text (or names no known function)."""
        value = _json_of(text)
        items = value if isinstance(value, list) else [value]
        if not items:
            return None
        names = {f.name for f in self.functions}
        calls: list[ToolCall] = []
        for item in items:
            if not isinstance(item, dict) or item.get("name") not in names:
                return None
            arguments = item.get("arguments", item.get("parameters", {}))
            if isinstance(arguments, str):
                arguments = _json_of(arguments)
            if not isinstance(arguments, dict):
                return None
            calls.append(
                ToolCall(
                    id=f"call_{uuid.uuid4().hex[:24]}",
                    function=FunctionCall(
                        name=str(item["name"]),
                        arguments=json.dumps(arguments, ensure_ascii=False),
                    ),
                )
            )
        return calls[:1] if self.single or self.legacy else calls


def plan_tools(request: ChatCompletionRequest, max_chars: int) -> ToolPlan | None:
    """The tool plan of a request, or None when no tool may be called; 400s say what to fix."""
    if request.tools and request.functions:
        raise InvalidRequestError("send tools or the older functions, not both", param="functions")
    legacy = bool(request.functions)
    param = "functions" if legacy else "tools"
    functions = tuple(request.functions or (t.function for t in request.tools or ()))
    choice: Any = request.function_call if legacy else request.tool_choice
    choice_param = "function_call" if legacy else "tool_choice"
    if not functions:
        if choice in (None, "none", "auto"):
            return None
        raise InvalidRequestError(
            f"{choice_param}: asks for a call but the request has no {param}", param=choice_param
        )
    _check_functions(functions, param, max_chars)
    single = request.parallel_tool_calls is False
    if choice in (None, "auto"):
        return ToolPlan(functions, forced=False, named=None, legacy=legacy, single=single)
    if choice == "none":
        return None
    if choice == "required":
        return ToolPlan(functions, forced=True, named=None, legacy=legacy, single=single)
    name = choice.function.name if isinstance(choice, NamedToolChoice) else choice.name
    if name not in {f.name for f in functions}:
        known = ", ".join(f.name for f in functions)
        raise InvalidRequestError(
            f"{choice_param}: no function named {name!r} in {param} (there are: {known})",
            param=choice_param,
        )
    return ToolPlan(functions, forced=True, named=name, legacy=legacy, single=single)


def _check_functions(functions: tuple[FunctionDefinition, ...], param: str, max_chars: int) -> None:
    seen: set[str] = set()
    size = 0
    for index, function in enumerate(functions):
        where = f"{param}[{index}]" + (".function" if param == "tools" else "")
        if function.name in seen:
            raise InvalidRequestError(
                f"{where}.name: {function.name!r} is defined twice; names must be unique",
                param=f"{where}.name",
            )
        seen.add(function.name)
        parameters = function.parameters
        if parameters is not None:
            try:
                Draft202012Validator.check_schema(parameters)
            except SchemaError as exc:
                raise InvalidRequestError(
                    f"{where}.parameters: not a valid JSON schema: {exc.message}",
                    param=f"{where}.parameters",
                    code="invalid_schema",
                ) from None
            if parameters.get("type", "object") != "object":
                raise InvalidRequestError(
                    f'{where}.parameters: must be an object schema ({{"type": "object"}}), '
                    "since arguments are named",
                    param=f"{where}.parameters",
                    code="invalid_schema",
                )
        size += len(json.dumps(_describe(function), ensure_ascii=False))
    if size > max_chars:
        raise InvalidRequestError(
            f"{param}: the definitions take {size} characters but this server accepts at most "
            f"{max_chars} (CHATBOT_MAX_MESSAGE_CHARS); send fewer or shorter tools",
            param=param,
            code="tools_too_large",
        )


def _describe(function: FunctionDefinition) -> dict[str, Any]:
    out: dict[str, Any] = {"name": function.name}
    if function.description:
        out["description"] = function.description
    out["parameters"] = function.parameters or {"type": "object", "properties": {}}
    return out


TOOL_CALL_TAG = "<tool_call>"  # Hermes / Qwen models wrap each call in these tags


def starts_like_a_call(text: str) -> bool:
    """Whether a reply so far may still turn out to be calls (JSON, a fence, a tag)."""
    start = text.lstrip()
    return not start or start[0] in "{[`" or TOOL_CALL_TAG.startswith(start[: len(TOOL_CALL_TAG)])


def _json_of(text: str) -> Any:
    """JSON in a reply, also in a Markdown code fence or ``<tool_call>`` tags; else None."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`").removeprefix("json").strip()
    elif stripped.startswith(TOOL_CALL_TAG):
        tagged = [part.split("</tool_call>")[0].strip() for part in stripped.split(TOOL_CALL_TAG)]
        stripped = "[" + ",".join(p for p in tagged if p) + "]"
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        return None


def history_text(message: ChatMessage, text: str) -> str:
    """How an assistant turn that made calls, or a tool's result, reads to the model."""
    if message.role in ("tool", "function"):
        label = message.name or message.tool_call_id or "a function"
        return f"Tool result ({label}):\n{text}"
    calls = list(message.tool_calls or ())
    if message.function_call is not None:
        calls.append(ToolCall(function=message.function_call))
    if not calls:
        return text
    shown = [
        {"name": call.function.name, "arguments": _json_of(call.function.arguments) or {}}
        for call in calls
    ]
    rendered = json.dumps(shown[0] if len(shown) == 1 else shown, ensure_ascii=False)
    return f"{text}\n{rendered}" if text else rendered
