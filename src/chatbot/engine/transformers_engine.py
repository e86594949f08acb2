"""The default engine: Hugging Face transformers, in process, on CPU or CUDA."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import torch

from chatbot.config import Device, EngineSettings
from chatbot.domain import GenerationParams, Message
from chatbot.engine import gguf_cache
from chatbot.engine.base import Accepted, Chunk, ChunkChannel, PromptWorker, stream_threaded
from chatbot.engine.batching import BatchingScheduler
from chatbot.engine.context import fit_to_context
from chatbot.engine.decoding import CausalSession, DecodingSession, Seq2SeqSession
from chatbot.engine.model_source import ModelSource, resolve
from chatbot.engine.prompting import ChatTemplatePrompt, PromptFormat, Seq2SeqHistoryPrompt
from chatbot.engine.scheduler import SequentialScheduler
from chatbot.engine.sequence import SequenceState
from chatbot.errors import ConfigurationError

logger = logging.getLogger(__name__)


class _Loaded:
    """What exists only after loading; kept together so a half-loaded engine cannot exist."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        prompt: PromptFormat,
        eos_ids: frozenset[int],
        scheduler: SequentialScheduler | BatchingScheduler,
        reply_limit: int | None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.eos_ids = eos_ids
        self.scheduler = scheduler
        self.reply_limit = reply_limit
        self.prompts = PromptWorker("engine")

    def prompt_tokens_of(self, messages: Sequence[Message]) -> int:
        return len(self.prompt.encode(messages))


class TransformersEngine:
    """Causal LMs with a chat template (folders, hub ids, GGUF files) and seq2seq chat models."""

    def __init__(self, settings: EngineSettings) -> None:
        self._settings = settings
        self._source: ModelSource = resolve(settings.model)
        self._device = _pick_device(settings.device)
        self._loaded: _Loaded | None = None
        self._load_lock = threading.Lock()
        self.load_seconds: float | None = None

    @property
    def model_id(self) -> str:
        return self._source.display_name

    @property
    def context_window(self) -> int:
        return self._state().prompt.input_window

    @property
    def device(self) -> torch.device:
        return self._device

    def load(self) -> None:
        with self._load_lock:
            if self._loaded is None:
                started = time.perf_counter()
                self._loaded = self._load()
                self.load_seconds = time.perf_counter() - started
                logger.info(
                    "loaded %s on %s in %.1fs", self.model_id, self._device, self.load_seconds
                )

    def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncGenerator[Chunk, None]:
        state = self._state()
        return stream_threaded(
            state.prompts, lambda channel: self._submit(state, messages, params, channel)
        )

    def _submit(
        self,
        state: _Loaded,
        messages: Sequence[Message],
        params: GenerationParams,
        channel: ChunkChannel,
    ) -> Accepted:
        if state.reply_limit is None:
            fitted = fit_to_context(
                messages, state.prompt_tokens_of, state.prompt.input_window, params.max_new_tokens
            )
            max_new = fitted.max_new_tokens
        else:
            fitted = fit_to_context(messages, state.prompt_tokens_of, state.prompt.input_window, 0)
            max_new = min(params.max_new_tokens, state.reply_limit)
        input_ids = state.prompt.encode(fitted.messages)
        sequence = SequenceState(
            channel,
            params.model_copy(update={"max_new_tokens": max_new}),
            state.tokenizer,
            state.eos_ids,
            input_ids,
            self._device,
            fitted.dropped_messages,
        )
        state.scheduler.submit(sequence)
        return Accepted(len(input_ids), fitted.dropped_messages)

    def close(self) -> None:
        with self._load_lock:
            if self._loaded is not None:
                self._loaded.prompts.close()
                self._loaded.scheduler.close()
                self._loaded = None

    # -- loading ---------------------------------------------------------------------------
    def _state(self) -> _Loaded:
        self.load()
        assert self._loaded is not None
        return self._loaded

    def _load(self) -> _Loaded:
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSeq2SeqLM,
            AutoTokenizer,
        )
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        if self._settings.threads:
            torch.set_num_threads(self._settings.threads)
        location, kwargs, convert_to = self._where_to_load_from()
        try:
            config = AutoConfig.from_pretrained(location, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
            model_class = (
                AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
            )
            model: Any = model_class.from_pretrained(
                location, dtype=_dtype_for(self._device), **kwargs
            )
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"CHATBOT_MODEL: cannot load {self._settings.model!r}: {exc}"
            ) from exc
        if convert_to is not None:
            gguf_cache.store(convert_to, model, tokenizer)
        model.to(self._device)
        model.eval()
        eos_ids = _eos_ids(model, tokenizer)
        window = self._settings.context_window
        prompt: PromptFormat
        reply_limit: int | None = None
        if config.is_encoder_decoder:
            positions = int(getattr(config, "max_position_embeddings", 0) or 512)
            prompt = Seq2SeqHistoryPrompt(tokenizer, min(positions, window or positions))
            reply_limit = max(1, positions - 1)
            new_session = self._session_factory(Seq2SeqSession, model)
        else:
            positions = int(getattr(config, "max_position_embeddings", 0) or 2048)
            prompt = ChatTemplatePrompt(tokenizer, window or positions)
            new_session = self._session_factory(CausalSession, model)
        scheduler: SequentialScheduler | BatchingScheduler
        name = f"engine-{self.model_id}"
        if (
            self._settings.batching
            and self._settings.max_batch_size > 1
            and not (config.is_encoder_decoder)
        ):
            scheduler = BatchingScheduler(model, self._device, self._settings.max_batch_size, name)
        else:  # the seed's one-request-at-a-time design (and every seq2seq model)
            scheduler = SequentialScheduler(new_session, name=name)
        return _Loaded(model, tokenizer, prompt, eos_ids, scheduler, reply_limit)

    def _where_to_load_from(self) -> tuple[str, dict[str, Any], Path | None]:
        """A GGUF file loads from its converted copy when there is one; else it makes one."""
        gguf_path = self._source.gguf_path
        if gguf_path is None:
            return self._source.location, {}, None
        folder = gguf_cache.cache_folder(self._settings.resolved_cache_dir(), gguf_path)
        if gguf_cache.cached(folder):
            return str(folder), {}, None
        return self._source.location, {"gguf_file": self._source.gguf_file}, folder

    def _session_factory(self, kind: type[CausalSession] | type[Seq2SeqSession], model: Any) -> Any:
        device = self._device

        def new_session(input_ids: list[int]) -> DecodingSession:
            return kind(model, input_ids, device)

        return new_session


def _pick_device(choice: Device) -> torch.device:
    if choice is Device.CUDA or (choice is Device.AUTO and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigurationError("CHATBOT_DEVICE: cuda was asked for but no GPU is visible")
        return torch.device("cuda")
    return torch.device("cpu")


def _dtype_for(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, list):
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)
