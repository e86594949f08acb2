"""Tools handed to an engine that takes them natively, instead of the generic prompt format.

Most models learn about tools only through the prompt we write (the generic format of
:mod:`chatbot.api.openai.tools`). Two kinds of engine know better, and say so with
``supports_native_tools``:

- the ``openai`` engine, whose upstream (vLLM, llama.cpp's server, OpenAI) takes OpenAI's
  ``tools`` itself: they go upstream as they came, and the upstream enforces ``tool_choice``;
- a local engine whose model's chat template renders tools (``tools`` in the Jinja template):
  the template lays the tools, the calls and the results out as the model was trained to read
  them; a forced call is still enforced here, by the JSON schema of the call.

Either way the engine gets the messages in OpenAI's shape too (assistant ``tool_calls``,
``tool`` results with their ``tool_call_id``), one for each message it is given, since the
generic format would rewrite them. Calls come back as text the API parses
(:func:`calls_as_text` for an upstream's, the model's own ``<tool_call>`` tags or JSON), so the
API answers ``tool_calls`` by one code path whichever engine made them.
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
    """OpenAI's tool fields of one request, unchanged, and its messages in OpenAI's shape.

    ``messages[i]`` is the engine's ``messages[i]`` as the client sent it (so an engine that
    drops old turns to fit its window drops the same ones here). ``tools`` may be empty: a
    history with tool calls still goes as it came.
    """

    tools: tuple[Mapping[str, Any], ...]
    tool_choice: str | Mapping[str, Any] | None
    messages: tuple[Mapping[str, Any], ...]
    parallel_tool_calls: bool | None = None

    @property
    def forces_call(self) -> bool:
        """``required`` or a named function: the reply must be a call."""
        return self.tool_choice == "required" or isinstance(self.tool_choice, Mapping)

    @property
    def offered(self) -> list[dict[str, Any]]:
        """The tools a chat template should show the model (none with ``tool_choice: none``)."""
        return [] if self.tool_choice == "none" else [dict(tool) for tool in self.tools]

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
