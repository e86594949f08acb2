"""Turning a list of messages into model input ids, for causal and for seq2seq chat models."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from chatbot.domain import Message, Role

logger = logging.getLogger(__name__)

_FALLBACK_ROLES = {Role.SYSTEM: "System", Role.USER: "User", Role.ASSISTANT: "Assistant"}
_SANE_MAX_LENGTH = 10_000_000


class PromptFormat(Protocol):
    """Renders messages as input ids; knows how many tokens the input may have."""

    input_window: int

    def encode(self, messages: Sequence[Message]) -> list[int]: ...


@runtime_checkable
class ToolTemplatePrompt(Protocol):
    """A prompt format whose chat template renders tools, calls and results itself."""

    renders_tools: bool

    def encode_with_tools(
        self, chat: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
    ) -> list[int]: ...


class ChatTemplatePrompt:
    """Causal LMs: the tokenizer's chat template, or a plain transcript when it has none.

    A template that uses ``tools`` (Qwen, Hermes, Llama 3.1, Mistral...) renders the request's
    tools and the history's calls and results in the model's own format
    (:meth:`encode_with_tools`); the model was trained on that, not on our generic format.
    """

    def __init__(self, tokenizer: Any, input_window: int) -> None:
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self.input_window = input_window
        template = getattr(tokenizer, "chat_template", None)
        self._has_template = bool(template)
        self.renders_tools = self._has_template and "tools" in str(template)
        if not self._has_template:
            logger.warning("the tokenizer has no chat template; using a plain transcript")

    def encode(self, messages: Sequence[Message]) -> list[int]:
        with self._lock:
            if self._has_template:
                text = self._tokenizer.apply_chat_template(
                    [{"role": m.role.value, "content": m.content} for m in messages],
                    add_generation_prompt=True,
                    tokenize=False,
                )
            else:
                text = (
                    "".join(f"{_FALLBACK_ROLES[m.role]}: {m.content}\n" for m in messages)
                    + "Assistant:"
                )
            ids: list[int] = self._tokenizer(text, add_special_tokens=False)["input_ids"]
            return ids

    def encode_with_tools(
        self, chat: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        """Messages in OpenAI's shape and OpenAI tool definitions, through the template."""
        with self._lock:
            text = self._tokenizer.apply_chat_template(
                [_for_template(message) for message in chat],
                tools=[dict(tool) for tool in tools] or None,
                add_generation_prompt=True,
                tokenize=False,
            )
            ids: list[int] = self._tokenizer(text, add_special_tokens=False)["input_ids"]
            return ids


def _for_template(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message as chat templates expect it: text content, call arguments as a dict.

    OpenAI sends arguments as a JSON string; templates (and transformers' documentation) take
    the object, which they print with ``tojson``.
    """
    out = dict(message)
    out["content"] = out.get("content") or ""
    calls = []
    for call in out.get("tool_calls") or ():
        function = dict(call.get("function") or {})
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):  # else left as the client sent it
                function["arguments"] = json.loads(arguments) if arguments.strip() else {}
        calls.append({**call, "function": function})
    if calls:
        out["tool_calls"] = calls
    return out


class Seq2SeqHistoryPrompt:
    """BlenderBot-style models: the turns joined as they were in training, ended by EOS.

    These models were trained on the dialogue alone, user turns with a leading space and turns
    separated by two spaces; they have no system role, so a system prompt is left out.
    """

    def __init__(self, tokenizer: Any, encoder_max_positions: int) -> None:
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        limit = getattr(tokenizer, "model_max_length", None) or _SANE_MAX_LENGTH
        self.input_window = min(encoder_max_positions, int(min(limit, _SANE_MAX_LENGTH)))

    def encode(self, messages: Sequence[Message]) -> list[int]:
        turns = [m for m in messages if m.role is not Role.SYSTEM]
        text = "  ".join((" " + m.content) if m.role is Role.USER else m.content for m in turns)
        with self._lock:
            ids: list[int] = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        eos = self._tokenizer.eos_token_id
        return [*ids, eos] if eos is not None else ids
