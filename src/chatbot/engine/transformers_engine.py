"""The default engine: Hugging Face transformers, in process, on CPU or CUDA."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from chatbot.config import Device, EngineSettings
from chatbot.engine import gguf_cache
from chatbot.engine.base import PromptWorker
from chatbot.engine.batching import BatchingScheduler
from chatbot.engine.constraints import GrammarTokenizer
from chatbot.engine.decoding import CausalSession, DecodingSession, Seq2SeqSession
from chatbot.engine.local import Loaded, LocalEngine
from chatbot.engine.model_source import resolve
from chatbot.engine.prompting import ChatTemplatePrompt, PromptFormat, Seq2SeqHistoryPrompt
from chatbot.engine.scheduler import SequentialScheduler
from chatbot.engine.sequence import SequenceState
from chatbot.errors import ConfigurationError

logger = logging.getLogger(__name__)


class TransformersEngine(LocalEngine):
    """Causal LMs with a chat template (folders, hub ids, GGUF files) and seq2seq chat models."""

    runtime_name = "transformers"

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings, resolve(settings.model))
        self.device = _pick_device(settings.device)
        self.sampling_device = str(self.device)

    def _queue(
        self, state: Loaded, sequence: SequenceState, json_schema: Mapping[str, Any] | None
    ) -> None:
        state.scheduler.submit(sequence)

    # -- loading ---------------------------------------------------------------------------
    def _state(self) -> Loaded:
        self.load()
        assert self._loaded is not None
        return self._loaded

    def _load(self) -> Loaded:
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
                location, dtype=_dtype_for(self.device), **kwargs
            )
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"CHATBOT_MODEL: cannot load {self._settings.model!r}: {exc}"
            ) from exc
        if convert_to is not None:
            gguf_cache.store(convert_to, model, tokenizer)
        model.to(self.device)
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
            scheduler = BatchingScheduler(model, self.device, self._settings.max_batch_size, name)
        else:  # the seed's one-request-at-a-time design (and every seq2seq model)
            scheduler = SequentialScheduler(new_session, name=name)
        return Loaded(
            model=model,
            tokenizer=tokenizer,
            prompt=prompt,
            eos_ids=eos_ids,
            scheduler=scheduler,
            window=prompt.input_window,
            prompts=PromptWorker("transformers"),
            reply_limit=reply_limit,
            grammar=GrammarTokenizer(lambda _: _grammar_tokenizer(tokenizer, eos_ids)),
        )

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
        device = self.device

        def new_session(input_ids: list[int]) -> DecodingSession:
            return kind(model, input_ids, device)

        return new_session


def _grammar_tokenizer(tokenizer: Any, eos_ids: frozenset[int]) -> Any:
    """llguidance's view of a Hugging Face (fast) tokenizer, for structured output."""
    from llguidance.hf import from_tokenizer

    try:
        return from_tokenizer(tokenizer, eos_token=sorted(eos_ids) or None)
    except ValueError as exc:  # a slow (Python) tokenizer
        raise ConfigurationError(
            f"structured output needs a fast tokenizer, and {type(tokenizer).__name__} is not one"
        ) from exc


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
