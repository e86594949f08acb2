"""Replies written by rule instead of by a model (``CHATBOT_ENGINE=scripted``).

For what is about everything but the model: the protocol, the queue, Stop, re-attach, waiting
states, errors. A backend on it is ready in about a second instead of loading a model (the
embedded one costs 3-10 s a process here, more under load), and each reply's length and pace are
settings, so a test makes the situation it needs certain: a reply that outlasts a Stop, a queue
that forms, a model still loading. It also lets a person try the UI or a client on a machine
without a model. LiteLLM's ``mock_response`` serves the same purpose for its proxy.

A reply is the words ``Scripted reply to <the last message's first words>:`` followed by
numbers counting up (``1 2 3 ...``), one token each, so a reader can tell how far it got.
It ends after ``scripted_reply_tokens`` tokens (``stop``), or at ``max_new_tokens``
(``length``); ``ignore_eos`` keeps it going until ``max_new_tokens``. A token is a word: the
prompt's size is its number of words plus four a message, which the context window holds as a
model's would (older turns are dropped, an oversized message is a 400). Structured output and
native tools need a real model: a JSON schema is refused with a clear 400.

No thread: each token is an ``asyncio.sleep`` away, so closing the stream stops the reply at
once, as the engine contract asks. In a test's own process, :meth:`ScriptedEngine.hold` makes
every reply wait before its next token until :meth:`ScriptedEngine.release`: a reply that is
certainly still running while the test does what it came for.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from chatbot.config import EngineSettings
from chatbot.domain import FinishReason, GenerationParams, Message, Role, Usage
from chatbot.engine.base import Chunk
from chatbot.engine.context import fit_to_context
from chatbot.errors import ConfigurationError, InvalidRequestError

logger = logging.getLogger(__name__)

MODEL_ID = "scripted"
DEFAULT_CONTEXT_WINDOW = 8192
TOKENS_PER_MESSAGE = 4
QUOTED_WORDS = 6
GATE_POLL_S = 0.05
HOLD_POLL_S = 0.01


def count_tokens(messages: Sequence[Message]) -> int:
    """Words, plus a message's framing: the scripted engine's tokenizer."""
    return sum(len(m.content.split()) + TOKENS_PER_MESSAGE for m in messages)


def reply_tokens(messages: Sequence[Message]) -> list[str]:
    """The reply's opening words, each a token (with its leading space after the first)."""
    last = next((m for m in reversed(messages) if m.role is not Role.SYSTEM), None)
    words = (last.content.split()[:QUOTED_WORDS] if last is not None else []) or ["nothing"]
    return ["Scripted", " reply", " to", *(f" {w}" for w in words), ":"]


class ScriptedEngine:
    """The engine protocol, with replies made by rule at a set pace."""

    def __init__(self, settings: EngineSettings) -> None:
        self._settings = settings
        self._window = settings.context_window or DEFAULT_CONTEXT_WINDOW
        self._loaded = False
        self._closed = threading.Event()  # ends a load in progress: a server stopping
        self._held = threading.Event()  # set: replies wait before their next token

    @property
    def model_id(self) -> str:
        return MODEL_ID

    @property
    def context_window(self) -> int:
        return self._window

    def load(self) -> None:
        """Takes ``scripted_load_s``, then waits for ``scripted_load_gate``: where loading is the
        subject, a test decides when it ends."""
        if self._loaded:
            return
        if self._settings.scripted_load_s > 0:
            logger.info("scripted engine: loading for %.1f s", self._settings.scripted_load_s)
            self._wait(self._settings.scripted_load_s)
        gate = self._settings.scripted_load_gate
        if gate is not None:
            logger.info("scripted engine: loading until %s exists", gate)
            while not gate.exists():
                self._wait(GATE_POLL_S)
        self._loaded = True
        logger.info(
            "scripted engine ready: %d tokens a reply, %.3f s a token, window %d",
            self._settings.scripted_reply_tokens,
            self._settings.scripted_token_s,
            self._window,
        )

    def hold(self) -> None:
        """Every reply waits before its next token until :meth:`release`."""
        self._held.set()

    def release(self) -> None:
        self._held.clear()

    def _wait(self, seconds: float) -> None:
        if self._closed.wait(seconds):
            raise ConfigurationError("the scripted engine was closed while it loaded")

    async def generate(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        json_schema: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[Chunk, None]:
        if json_schema is not None:
            raise InvalidRequestError(
                "the scripted engine cannot follow a JSON schema; structured output needs a "
                "model (CHATBOT_ENGINE=openvino, transformers, llamacpp or openai)"
            )
        fitted = fit_to_context(messages, count_tokens, self._window, params.max_new_tokens)
        prompt = fitted.prompt_tokens
        dropped = fitted.dropped_messages
        yield Chunk("", Usage(prompt_tokens=prompt), dropped_messages=dropped)
        natural = max(1, self._settings.scripted_reply_tokens)
        limit = fitted.max_new_tokens if params.ignore_eos else min(natural, fitted.max_new_tokens)
        opening = reply_tokens(fitted.messages)
        for index in range(limit):
            await asyncio.sleep(self._settings.scripted_token_s)
            while self._held.is_set():
                await asyncio.sleep(HOLD_POLL_S)
            text = opening[index] if index < len(opening) else f" {index - len(opening) + 1}"
            yield Chunk(
                text, Usage(prompt_tokens=prompt, completion_tokens=index + 1), None, dropped
            )
        finish = FinishReason.LENGTH if limit >= fitted.max_new_tokens else FinishReason.STOP
        usage = Usage(prompt_tokens=prompt, completion_tokens=limit)
        yield Chunk("", usage, finish, dropped)

    def close(self) -> None:
        self._closed.set()
        self._held.clear()
        self._loaded = False
