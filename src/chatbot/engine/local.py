"""What the engines that run a model in this process share: transformers, llama.cpp, OpenVINO.

Each loads once (on first use or when asked, never at import), keeps what loading made in one
object (so a half-loaded engine cannot exist), tokenizes and fits prompts on its
:class:`~chatbot.engine.base.PromptWorker`, and queues a
:class:`~chatbot.engine.sequence.SequenceState` on its own model thread. Only ``_load`` and
``_queue`` differ from engine to engine.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chatbot.config import EngineSettings
from chatbot.domain import GenerationParams, Message
from chatbot.engine.base import Accepted, Chunk, ChunkChannel, PromptWorker, stream_threaded
from chatbot.engine.constraints import GrammarTokenizer, JsonConstraint
from chatbot.engine.context import fit_to_context
from chatbot.engine.model_source import ModelSource
from chatbot.engine.prompting import ToolTemplatePrompt
from chatbot.engine.sequence import SequenceState
from chatbot.engine.tool_request import ToolRequest
from chatbot.errors import ConfigurationError

logger = logging.getLogger(__name__)


def import_runtime(module: str, setting: str, install: str) -> Any:
    """An optional runtime's module, or an error that says how to install it or what else works."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(f"{setting} needs {install}") from exc


class PromptEncoder(Protocol):
    def encode(self, messages: Sequence[Message]) -> list[int]: ...


class Scheduler(Protocol):
    """The model thread: takes requests, stops when closed."""

    def submit(self, request: Any) -> None: ...

    def close(self) -> None: ...


@dataclass
class Loaded:
    """What loading made, kept together so a half-loaded engine cannot exist."""

    model: Any
    tokenizer: Any  # decodes token ids: what IncrementalDetokenizer calls
    prompt: PromptEncoder
    eos_ids: frozenset[int]
    scheduler: Scheduler
    window: int
    prompts: PromptWorker
    reply_limit: int | None = None  # seq2seq decoders cap the reply whatever the window
    free: Callable[[], None] | None = None  # what else loading made (llama.cpp's context)
    grammar: GrammarTokenizer | None = None  # structured output when we sample ourselves

    def close(self) -> None:
        self.prompts.close()
        self.scheduler.close()
        if self.free is not None:
            self.free()


class LocalEngine:
    """Load once, generate through the prompt worker and a model thread, close once."""

    runtime_name = "engine"
    sampling_device = "cpu"  # where seeded sampling runs; the transformers engine may use CUDA

    def __init__(self, settings: EngineSettings, source: ModelSource) -> None:
        self._settings = settings
        self._source = source
        self._loaded: Loaded | None = None
        self._load_lock = threading.Lock()
        self.load_seconds: float | None = None

    @property
    def model_id(self) -> str:
        return self._source.display_name

    @property
    def context_window(self) -> int:
        return self._state().window

    def load(self) -> None:
        with self._load_lock:
            if self._loaded is None:
                started = time.perf_counter()
                self._loaded = self._load()
                self.load_seconds = time.perf_counter() - started
                logger.info(
                    "loaded %s on %s (window %d) in %.1fs",
                    self.model_id,
                    self.runtime_name,
                    self._loaded.window,
                    self.load_seconds,
                )

    @property
    def supports_native_tools(self) -> bool:
        """Whether the loaded model's chat template renders tools (else: the generic format).

        False until loaded: the template is only known then.
        """
        prompt = self._loaded.prompt if self._loaded is not None else None
        return isinstance(prompt, ToolTemplatePrompt) and prompt.renders_tools

    def generate(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        json_schema: Mapping[str, Any] | None = None,
        tools: ToolRequest | None = None,
    ) -> AsyncGenerator[Chunk, None]:
        state = self._state()
        return stream_threaded(
            state.prompts,
            lambda channel: self._submit(state, messages, params, channel, json_schema, tools),
        )

    def close(self) -> None:
        with self._load_lock:
            if self._loaded is not None:
                self._loaded.close()
                self._loaded = None

    # -- for the engines ---------------------------------------------------------------------
    def _state(self) -> Loaded:
        self.load()
        assert self._loaded is not None
        return self._loaded

    def _submit(
        self,
        state: Loaded,
        messages: Sequence[Message],
        params: GenerationParams,
        channel: ChunkChannel,
        json_schema: Mapping[str, Any] | None = None,
        tools: ToolRequest | None = None,
    ) -> Accepted:
        """Fit the prompt to the window (oldest turns first), tokenize, queue; on the worker."""
        constraint = None if json_schema is None else self._constraint(state, json_schema)
        encode: Callable[[Sequence[Message]], list[int]] = state.prompt.encode
        if tools is not None:
            encode = _with_tools(state.prompt, messages, tools)

        def count(candidate: Sequence[Message]) -> int:
            return len(encode(candidate))

        if state.reply_limit is None:
            fitted = fit_to_context(messages, count, state.window, params.max_new_tokens)
            max_new = fitted.max_new_tokens
        else:  # the decoder, not the window, bounds the reply
            fitted = fit_to_context(messages, count, state.window, 0)
            max_new = min(params.max_new_tokens, state.reply_limit)
        input_ids = encode(fitted.messages)
        sequence = SequenceState(
            channel,
            params.model_copy(update={"max_new_tokens": max_new}),
            state.tokenizer,
            state.eos_ids,
            input_ids,
            self.sampling_device,
            fitted.dropped_messages,
            constraint,
        )
        self._queue(state, sequence, json_schema)
        return Accepted(len(input_ids), fitted.dropped_messages)

    def _load(self) -> Loaded:
        raise NotImplementedError

    def _constraint(self, state: Loaded, json_schema: Mapping[str, Any]) -> JsonConstraint | None:
        """The grammar state that masks this reply's logits (engines that sample here)."""
        if state.grammar is None:
            raise ConfigurationError(f"{self.runtime_name} has no structured output for this model")
        return state.grammar.constraint(json_schema, state.eos_ids)

    def _queue(
        self, state: Loaded, sequence: SequenceState, json_schema: Mapping[str, Any] | None
    ) -> None:
        """Hand the request to the model thread."""
        raise NotImplementedError


def _with_tools(
    prompt: PromptEncoder, messages: Sequence[Message], tools: ToolRequest
) -> Callable[[Sequence[Message]], list[int]]:
    """An encoder of any kept subset of ``messages`` through the template, with the tools.

    Fitting to the window keeps message objects as they are, so each one finds its OpenAI
    shape by identity.
    """
    if not isinstance(prompt, ToolTemplatePrompt) or not prompt.renders_tools:
        raise ConfigurationError("this model's chat template does not render tools")
    shapes = {id(message): shape for message, shape in zip(messages, tools.messages, strict=True)}
    offered = tools.offered

    def encode(kept: Sequence[Message]) -> list[int]:
        return prompt.encode_with_tools([shapes[id(message)] for message in kept], offered)

    return encode
