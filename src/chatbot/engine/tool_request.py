"""Tools handed to an engine that passes them on natively, instead of the generic prompt format.

Most engines learn about tools only through the prompt (the generic format of
:mod:`chatbot.api.openai.tools`). An engine whose model server understands OpenAI's ``tools``
itself (the ``openai`` engine: vLLM, llama.cpp's server, OpenAI) gets them as they came, with
the request's own messages (assistant ``tool_calls``, ``tool`` results), because rewriting them
into the generic format would hide them from the upstream's chat template and its tool parser.
Such an engine says so with ``supports_native_tools = True`` and reports the calls the upstream
makes as text in the generic JSON format (:func:`calls_as_text`), so that the API answers them
as ``tool_calls`` by one code path whichever engine made them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard

from chatbot.domain import GenerationParams, Message
from chatbot.engine.base import Chunk


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """OpenAI's tool fields of one request, unchanged, and the request's messages as sent.

    ``tools`` may be empty: a history with tool calls still goes as it came.
    """

    tools: tuple[Mapping[str, Any], ...]
    tool_choice: str | Mapping[str, Any] | None
    messages: tuple[Mapping[str, Any], ...]
    parallel_tool_calls: bool | None = None

    def fields(self) -> dict[str, Any]:
        """The request fields an OpenAI-compatible upstream takes (without the messages)."""
        out: dict[str, Any] = {}
        if self.tools:
            out["tools"] = [dict(tool) for tool in self.tools]
            if self.tool_choice is not None:
                choice = self.tool_choice
                out["tool_choice"] = choice if isinstance(choice, str) else dict(choice)
            if self.parallel_tool_calls is not None:
                out["parallel_tool_calls"] = self.parallel_tool_calls
        return out


class NativeToolEngine(Protocol):
    """An engine that takes :class:`ToolRequest` and passes it on as it came."""

    supports_native_tools: bool

    def generate(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        json_schema: Mapping[str, Any] | None = None,
        tools: ToolRequest | None = None,
    ) -> AsyncGenerator[Chunk, None]: ...


def takes_native_tools(engine: object) -> TypeGuard[NativeToolEngine]:
    """Whether an engine passes tools on natively (else they go in the generic prompt format)."""
    return getattr(engine, "supports_native_tools", False) is True


def calls_as_text(calls: Sequence[tuple[str, str]]) -> str:
    """Calls made upstream, as (name, arguments JSON text), in the generic format's JSON."""
    return json.dumps(
        [{"name": name, "arguments": arguments} for name, arguments in calls], ensure_ascii=False
    )
