"""The fast CPU engine: llama.cpp through llama-cpp-python, decoding requests in one batch.

llama.cpp reads the quantized GGUF weights directly (98 MB for the embedded model instead of
the 540 MB transformers reads per token in fp32), so one stream is about three times faster on
a CPU. The high-level ``Llama`` class serves one sequence at a time; here the low-level
bindings give every request its own KV sequence id in one context, and each step decodes the
last token of every active request in a single ``llama_decode`` call (continuous batching:
a new request is prefilled and joins at the next step). Sampling, detokenization, stop
sequences and limits are the same :class:`SequenceState` the transformers engine uses.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from chatbot.config import EngineSettings
from chatbot.domain import FinishReason, Message
from chatbot.engine.arrivals import ArrivalQueue
from chatbot.engine.base import PromptWorker
from chatbot.engine.constraints import GrammarTokenizer
from chatbot.engine.local import Loaded, LocalEngine, import_runtime
from chatbot.engine.model_source import resolve
from chatbot.engine.sequence import SequenceState
from chatbot.engine.threads import start_model_thread
from chatbot.errors import ConfigurationError

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = 2048  # per request
# KV cells shared by all requests (23 KB each for the embedded model): enough for 16 chats of a
# few hundred tokens. When it fills, the longest reply ends early (finish reason "length").
KV_POOL_TOKENS = 4096
PREFILL_CHUNK = 512


def _bindings() -> Any:
    return import_runtime(
        "llama_cpp", "CHATBOT_ENGINE=llamacpp", "llama-cpp-python: pip install 'chatbot[llamacpp]'"
    )


class _Detokenizer:
    """The ``decode`` that :class:`IncrementalDetokenizer` expects, over llama.cpp's vocabulary."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        raw: bytes = self._model.detokenize(list(ids), special=not skip_special_tokens)
        return raw.decode("utf-8", errors="replace")


class _ChatPrompt:
    """The GGUF's own chat template (Jinja), rendered as transformers would, then tokenized."""

    def __init__(self, llama_cpp: Any, model: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        metadata: dict[str, str] = model.metadata()
        template = metadata.get("tokenizer.chat_template")
        if not template:
            raise ConfigurationError(
                "CHATBOT_MODEL: this GGUF file has no chat template (tokenizer.chat_template)"
            )
        self._model = model
        self._lock = threading.Lock()
        self._format = Jinja2ChatFormatter(
            template=template,
            eos_token=_piece(model, model.token_eos()),
            bos_token=_piece(model, model.token_bos()),
        )

    def encode(self, messages: Sequence[Message]) -> list[int]:
        with self._lock:
            chat: list[Any] = [{"role": m.role.value, "content": m.content} for m in messages]
            rendered = self._format(messages=chat)
            ids: list[int] = self._model.tokenize(
                rendered.prompt.encode("utf-8"), add_bos=False, special=True
            )
        return ids


def _piece(model: Any, token: int) -> str:
    if token < 0:
        return ""
    raw: bytes = model.detokenize([token], special=True)
    return raw.decode("utf-8", errors="replace")


class _Row:
    __slots__ = ("position", "seq_id", "sequence")

    def __init__(self, sequence: SequenceState, seq_id: int) -> None:
        self.sequence = sequence
        self.seq_id = seq_id
        self.position = 0


class _LlamaScheduler:
    """One thread owns the llama.cpp context; each step decodes one token of every row."""

    def __init__(self, llama_cpp: Any, context: Any, n_vocab: int, slots: int) -> None:
        self._lib = llama_cpp
        self._context = context
        self._n_vocab = n_vocab
        self._free_ids = list(range(slots))
        self._pool_full = False  # admit nobody until a row leaves and frees KV cells
        self._rows: list[_Row] = []
        self._arrivals: ArrivalQueue[SequenceState] = ArrivalQueue(
            lambda s: s.cancelled, lambda s: s.finish(FinishReason.CANCELLED)
        )
        self._batch = llama_cpp.llama_batch_init(max(PREFILL_CHUNK, slots), 0, 1)
        self._thread = start_model_thread(self._run, "engine-llamacpp")

    def submit(self, sequence: SequenceState) -> None:
        self._arrivals.put(sequence)

    def close(self) -> None:
        self._arrivals.close()
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self._lib.llama_batch_free(self._batch)

    def _run(self) -> None:
        while (
            arrivals := self._arrivals.take(
                0 if self._pool_full else len(self._free_ids), busy=bool(self._rows)
            )
        ) is not None:
            try:
                for sequence in arrivals:
                    self._admit(sequence)
                if self._rows:
                    self._step()
            except Exception as exc:  # a failed step fails its rows, never the engine
                logger.exception("llama.cpp generation failed")
                for row in self._rows:
                    row.sequence.fail(exc)
                    self._release(row)
                self._rows = []
        for row in self._rows:
            row.sequence.finish(FinishReason.CANCELLED)
        for sequence in self._arrivals.drain():
            sequence.finish(FinishReason.CANCELLED)

    def _room(self) -> int:
        return 0 if self._pool_full else len(self._free_ids)

    def _admit(self, sequence: SequenceState) -> None:
        if sequence.cancelled:
            sequence.finish(FinishReason.CANCELLED)
            return
        row = _Row(sequence, self._free_ids.pop())
        try:
            ids = sequence.input_ids
            for start in range(0, len(ids), PREFILL_CHUNK):
                chunk = ids[start : start + PREFILL_CHUNK]
                if not self._fill([(row, token) for token in chunk], logits_last_only=True):
                    if not self._rows:
                        raise RuntimeError("the prompt does not fit in llama.cpp's KV cache")
                    self._release(row)
                    self._pool_full = True
                    self._arrivals.put_back(sequence)  # again once a reply has finished
                    return
            if sequence.advance(sequence.choose(self._logits(self._batch.n_tokens - 1))):
                self._release(row)
                return
        except Exception as exc:
            logger.exception("llama.cpp prefill failed")
            sequence.fail(exc)
            self._release(row)
            return
        self._rows.append(row)

    def _step(self) -> None:
        live = []
        for row in self._rows:
            if row.sequence.cancelled:
                row.sequence.finish(FinishReason.CANCELLED)
                self._release(row)
            else:
                live.append(row)
        self._rows = live
        if not live:
            return
        while not self._fill(
            [(row, row.sequence.last_token or 0) for row in live], logits_last_only=False
        ):
            longest = max(live, key=lambda row: row.position)
            logger.warning("llama.cpp KV cache full: ending the longest reply early")
            longest.sequence.finish(FinishReason.LENGTH)
            self._release(longest)
            live.remove(longest)
            self._rows = live
            if not live:
                return
        kept = []
        for i, row in enumerate(live):
            sequence = row.sequence
            if sequence.advance(sequence.choose(self._logits(i))):
                self._release(row)
            elif sequence.cancelled:
                sequence.finish(FinishReason.CANCELLED)
                self._release(row)
            else:
                kept.append(row)
        self._rows = kept

    def _fill(self, tokens: list[tuple[_Row, int]], *, logits_last_only: bool) -> bool:
        """Decode each (row, token) pair at that row's next position; False: no KV room."""
        batch = self._batch
        batch.n_tokens = len(tokens)
        for i, (row, token) in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = row.position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = row.seq_id
            batch.logits[i] = not logits_last_only or i == len(tokens) - 1
            row.position += 1
        code = self._lib.llama_decode(self._context.ctx, batch)
        if code == 1:  # no free KV cells; nothing was decoded
            for row, _token in tokens:
                row.position -= 1
            return False
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        return True

    def _logits(self, index: int) -> torch.Tensor:
        pointer = self._lib.llama_get_logits_ith(self._context.ctx, index)
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)))

    def _release(self, row: _Row) -> None:
        self._context.kv_cache_seq_rm(row.seq_id, -1, -1)
        self._free_ids.append(row.seq_id)
        self._pool_full = False


def _grammar_tokenizer(vocab: Any, n_vocab: int, eos_ids: frozenset[int]) -> Any:
    """llguidance's view of llama.cpp's vocabulary, for structured output."""
    from llguidance.llamacpp import lltokenizer_from_vocab

    return lltokenizer_from_vocab(vocab, n_vocab=n_vocab, eos_token=sorted(eos_ids) or None)


def _free(context: Any, model: Any) -> None:
    context.close()
    model.close()


class LlamaCppEngine(LocalEngine):
    """GGUF models on llama.cpp; batched across requests up to ``max_batch_size``."""

    runtime_name = "llama.cpp"

    def __init__(self, settings: EngineSettings) -> None:
        source = resolve(settings.model)
        if source.gguf_path is None:
            raise ConfigurationError(
                f"CHATBOT_MODEL: the llamacpp engine needs a .gguf file, not {settings.model!r}"
            )
        super().__init__(settings, source)
        self._path = source.gguf_path
        self._slots = settings.max_batch_size if settings.batching else 1

    def _queue(
        self, state: Loaded, sequence: SequenceState, json_schema: Mapping[str, Any] | None
    ) -> None:
        state.scheduler.submit(sequence)

    def _load(self) -> Loaded:
        llama_cpp = _bindings()
        from llama_cpp import _internals

        llama_cpp.llama_backend_init()
        verbose = logger.isEnabledFor(logging.DEBUG)
        # llama.cpp's own log lines go through this logger's level (as Llama(verbose=...) does).
        logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)
        try:
            model = _internals.LlamaModel(
                path_model=str(self._path),
                params=llama_cpp.llama_model_default_params(),
                verbose=verbose,
            )
        except (ValueError, OSError) as exc:
            raise ConfigurationError(f"CHATBOT_MODEL: cannot load {self._path}: {exc}") from exc
        window = self._settings.context_window or min(model.n_ctx_train(), DEFAULT_WINDOW)
        threads = self._settings.threads or os.cpu_count() or 1
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = max(window, min(window * self._slots, KV_POOL_TOKENS))
        params.n_seq_max = self._slots
        params.n_batch = params.n_ubatch = max(PREFILL_CHUNK, self._slots)
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = True  # one pool of cells; a short chat does not reserve a window
        try:
            context = _internals.LlamaContext(model=model, params=params, verbose=verbose)
        except ValueError as exc:
            model.close()  # type: ignore[no-untyped-call]
            raise ConfigurationError(
                f"llama.cpp could not make a context of {self._slots} x {window} tokens: {exc}; "
                "lower CHATBOT_MAX_BATCH_SIZE or CHATBOT_CONTEXT_WINDOW"
            ) from exc
        vocab = model.vocab
        n_vocab = model.n_vocab()
        eos_ids = frozenset(t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t))
        prompt = _ChatPrompt(llama_cpp, model)
        scheduler = _LlamaScheduler(llama_cpp, context, n_vocab, self._slots)
        return Loaded(
            model=model,
            tokenizer=_Detokenizer(model),
            prompt=prompt,
            eos_ids=eos_ids,
            scheduler=scheduler,
            window=window,
            prompts=PromptWorker("llamacpp"),
            free=lambda: _free(context, model),
            grammar=GrammarTokenizer(lambda _: _grammar_tokenizer(vocab, n_vocab, eos_ids)),
        )
