"""Turning a list of messages into model input ids, for causal and for seq2seq chat models."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from chatbot.domain import Message, Role

logger = logging.getLogger(__name__)

_FALLBACK_ROLES = {Role.SYSTEM: "System", Role.USER: "User", Role.ASSISTANT: "Assistant"}
_SANE_MAX_LENGTH = 10_000_000


class PromptFormat(Protocol):
    """Renders messages as input ids; knows how many tokens the input may have."""

    input_window: int

    def encode(self, messages: Sequence[Message]) -> list[int]: ...


class ChatTemplatePrompt:
    """Causal LMs: the tokenizer's chat template, or a plain transcript when it has none."""

    def __init__(self, tokenizer: Any, input_window: int) -> None:
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self.input_window = input_window
        self._has_template = bool(getattr(tokenizer, "chat_template", None))
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
