"""The default CPU engine for GGUF models: OpenVINO GenAI's continuous-batching pipeline.

OpenVINO GenAI reads GGUF files (no compiler, prebuilt wheels) and decodes 4-bit weights with
its own CPU kernels, several times llama.cpp's server throughput under load (BENCHMARKS.md).
Its reader rounds the offsets of 4-bit blocks, though, so a GGUF is served through an IR copy
with the file's exact weights (:mod:`chatbot.engine.openvino_ir`), made once at the first start,
and the precision asked of the CPU plugin is the first it accepts
(:mod:`chatbot.engine.openvino_precision`; f32 first, which keeps batched greedy replies equal
to unbatched ones).

One model thread owns a ``ContinuousBatchingPipeline``: each turn of its loop adds the requests
that arrived (they join at the next ``step()``), drops the handles of requests whose reader left
(cancel within one step), runs one ``step()`` and feeds every new token to the request's
:class:`SequenceState`. So stop sequences, whole-character detokenization, limits and usage are
the same code the other engines use; OpenVINO does the sampling (greedy, or temperature / top_p
with a per-request ``rng_seed``). Prefix caching is on, so the history a conversation sends again
at every turn is found in the KV cache instead of being prefilled again.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from chatbot.config import EngineSettings
from chatbot.domain import FinishReason, GenerationParams, Message
from chatbot.engine import openvino_ir, openvino_precision
from chatbot.engine.arrivals import ArrivalQueue
from chatbot.engine.base import PromptWorker
from chatbot.engine.constraints import compile_json_schema
from chatbot.engine.local import Loaded, LocalEngine, import_runtime
from chatbot.engine.model_source import resolve
from chatbot.engine.sequence import SequenceState
from chatbot.engine.threads import start_model_thread
from chatbot.errors import ConfigurationError, GenerationError

logger = logging.getLogger(__name__)

# The window when neither the settings nor the GGUF name one. The KV cache is shared by all
# requests (``CACHE_SIZE_GB``), so a long window costs nothing until a prompt uses it.
DEFAULT_WINDOW = 8192
CACHE_SIZE_GB = 1  # about 23k tokens of f32 KV cache for the embedded model (46 KB each)
TOP_P_FLOOR = 1e-6
_OTHER_ENGINES = "set CHATBOT_ENGINE=transformers (or llamacpp) for this model"


def _genai() -> Any:
    return import_runtime(
        "openvino_genai",
        "CHATBOT_ENGINE=openvino",
        "openvino-genai: pip install openvino-genai (or set CHATBOT_ENGINE=transformers)",
    )


_GGUF_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}


def gguf_context_length(path: Path) -> int | None:
    """The training context length a GGUF file declares (``<arch>.context_length``).

    Reads only the key-value header: ``gguf.GGUFReader`` also maps every tensor, which takes
    seconds on a busy machine.
    """
    try:
        with path.open("rb") as file:
            values = _gguf_header(file)
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        logger.debug("could not read the header of %s", path, exc_info=True)
        return None
    length = values.get(f"{values.get('general.architecture')}.context_length")
    return int(length) if isinstance(length, int) else None


def _gguf_header(file: BinaryIO) -> dict[str, object]:
    def read(fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, file.read(size))[0]

    def string() -> str:
        return bytes(file.read(read("Q"))).decode("utf-8")

    def value(kind: int) -> object:
        if kind == 8:
            return string()
        if kind == 9:
            item_kind, count = read("I"), read("Q")
            if item_kind in _GGUF_SCALARS:  # skipped, not decoded: vocabularies are long
                file.seek(count * struct.calcsize(_GGUF_SCALARS[item_kind]), 1)
            else:
                for _ in range(count):
                    value(item_kind)
            return None
        return read(_GGUF_SCALARS[kind])

    if file.read(4) != b"GGUF":
        raise ValueError("not a GGUF file")
    read("I")  # version
    read("Q")  # tensor count
    values: dict[str, object] = {}
    for _ in range(read("Q")):
        key = string()
        values[key] = value(read("I"))
    return values


class _ChatPrompt:
    """The model's chat template (OpenVINO reads it from the GGUF), tokenized as transformers."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def encode(self, messages: Sequence[Message]) -> list[int]:
        chat = [{"role": m.role.value, "content": m.content} for m in messages]
        text = self._tokenizer.apply_chat_template(chat, add_generation_prompt=True)
        tokens = self._tokenizer.encode(text, add_special_tokens=False).input_ids
        ids: list[int] = tokens.data[0].tolist()
        return ids


class _Request:
    """A queued or running request: its decoding state, config and (once added) its handle."""

    __slots__ = ("config", "handle", "sequence")

    def __init__(self, sequence: SequenceState, config: Any) -> None:
        self.sequence = sequence
        self.config = config
        self.handle: Any = None


class _OpenVINOScheduler:
    """The model thread: adds arrivals, drops cancelled handles, steps, hands tokens out."""

    def __init__(self, genai: Any, pipeline: Any) -> None:
        self._genai = genai
        self._pipeline = pipeline
        self._ids = itertools.count()
        self._rows: list[_Request] = []
        self._arrivals: ArrivalQueue[_Request] = ArrivalQueue(
            lambda r: r.sequence.cancelled, lambda r: r.sequence.finish(FinishReason.CANCELLED)
        )
        self._running = genai.GenerationStatus.RUNNING
        from openvino import Tensor

        self._tensor = Tensor
        self._thread = start_model_thread(self._run, "engine-openvino")

    def submit(self, request: _Request) -> None:
        self._arrivals.put(request)

    def close(self) -> None:
        self._arrivals.close()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while (arrivals := self._arrivals.take(None, busy=bool(self._rows))) is not None:
            try:
                for request in arrivals:
                    self._admit(request)
                self._drop_cancelled()
                if self._rows:
                    self._pipeline.step()
                    self._collect()
            except Exception as exc:  # a failed step fails its rows, never the engine
                logger.exception("OpenVINO generation failed")
                for row in self._rows:
                    self._drop(row)
                    row.sequence.fail(exc)
                self._rows = []
        for row in self._rows:
            self._drop(row)
            row.sequence.finish(FinishReason.CANCELLED)
        for request in self._arrivals.drain():
            request.sequence.finish(FinishReason.CANCELLED)

    def _admit(self, request: _Request) -> None:
        if request.sequence.cancelled:
            request.sequence.finish(FinishReason.CANCELLED)
            return
        ids = np.asarray([request.sequence.input_ids], dtype=np.int64)
        tensor = self._tensor(ids)
        try:
            request.handle = self._pipeline.add_request(next(self._ids), tensor, request.config)
        except Exception as exc:  # refused by OpenVINO: this request fails, never hangs
            logger.warning("OpenVINO refused a request: %s", exc)
            request.sequence.fail(GenerationError(f"the engine refused the request: {exc}"))
            return
        self._rows.append(request)

    def _drop_cancelled(self) -> None:
        live = []
        for row in self._rows:
            if row.sequence.cancelled:
                self._drop(row)
                row.sequence.finish(FinishReason.CANCELLED)
            else:
                live.append(row)
        self._rows = live

    def _collect(self) -> None:
        kept = []
        for row in self._rows:
            sequence, handle = row.sequence, row.handle
            if handle.can_read():
                for output in handle.read().values():
                    for token in output.generated_ids:
                        if sequence.advance(int(token)):
                            break
            if sequence.finished:  # eos, a stop sequence or the limit, seen on our side
                self._drop(row)
                continue
            status = handle.get_status()
            if status == self._running:
                kept.append(row)
            elif status == self._genai.GenerationStatus.IGNORED:
                sequence.fail(GenerationError("the prompt does not fit in OpenVINO's KV cache"))
            else:  # finished inside OpenVINO without a token we stop on: its max_new_tokens
                sequence.finish(FinishReason.LENGTH)
        self._rows = kept

    def _drop(self, row: _Request) -> None:
        if row.handle is not None and row.handle.get_status() == self._running:
            row.handle.cancel()


def _cannot_load(
    path: Path, refused: openvino_precision.AllRefused, plugin: openvino_precision.CPUPlugin
) -> str:
    """Name the cause: the plugin's own words, and the precisions when they made the difference."""
    tried = ", ".join(r.config.name for r in refused.refusals)
    if refused.precision_dependent:
        return (
            f"CHATBOT_MODEL: the OpenVINO CPU plugin refused every precision tried for {path} "
            f"({refused.cause()}) on {plugin.describe()}; set CHATBOT_OPENVINO_PRECISION to one "
            f"of {', '.join(openvino_precision.supported(plugin))}, or {_OTHER_ENGINES}"
        )
    return (
        f"CHATBOT_MODEL: OpenVINO cannot load {path}: {refused.cause()} (the same with every "
        f"precision tried: {tried}); {_OTHER_ENGINES}"
    )


class OpenVINOEngine(LocalEngine):
    """GGUF models (or OpenVINO IR folders) on OpenVINO GenAI, batched up to ``max_batch_size``.

    A ``json_schema`` given to :meth:`generate` is enforced by OpenVINO's own structured output
    (xgrammar underneath).
    """

    runtime_name = "OpenVINO"

    def __init__(self, settings: EngineSettings) -> None:
        source = resolve(settings.model)
        path = source.gguf_path or Path(source.location)
        if source.gguf_path is None and not (path / "openvino_model.xml").is_file():
            raise ConfigurationError(
                f"CHATBOT_MODEL: the openvino engine needs a .gguf file or an OpenVINO IR folder, "
                f"not {settings.model!r}; {_OTHER_ENGINES}"
            )
        super().__init__(settings, source)
        self._path = path
        self._slots = settings.max_batch_size if settings.batching else 1
        self.loaded_from: Path | None = None  # the GGUF, its IR copy or an IR folder
        self.precision: str | None = None  # the openvino_precision configuration that loaded

    def _constraint(self, state: Loaded, json_schema: Mapping[str, Any]) -> None:
        """OpenVINO enforces the schema itself; here it is only checked, so a bad one is a 400."""
        compile_json_schema(json_schema)

    def _queue(
        self, state: Loaded, sequence: SequenceState, json_schema: Mapping[str, Any] | None
    ) -> None:
        config = self._config(sequence.params, state.eos_ids, json_schema)
        state.scheduler.submit(_Request(sequence, config))

    def _config(
        self,
        params: GenerationParams,
        eos_ids: frozenset[int],
        json_schema: Mapping[str, Any] | None,
    ) -> Any:
        """OpenVINO's GenerationConfig; stop sequences stay on our side (they never leak)."""
        genai = _genai()
        config = genai.GenerationConfig()
        config.max_new_tokens = params.max_new_tokens
        if params.ignore_eos and json_schema is None:
            config.ignore_eos = True
            config.stop_token_ids = set()
        else:
            config.stop_token_ids = set(eos_ids)
        # A nucleus below float32's smallest step (OpenVINO rounds it to 0 and refuses it) holds
        # only the likeliest token: that is greedy decoding.
        if params.greedy or params.top_p < TOP_P_FLOOR:
            config.do_sample = False
        else:
            config.do_sample = True
            config.temperature = params.temperature
            config.top_p = params.top_p
            # OpenVINO's default seed is 0 for every request: unseeded must mean random.
            seed = params.seed if params.seed is not None else random.getrandbits(63)
            config.rng_seed = seed
        if json_schema is not None:
            structured = genai.StructuredOutputConfig()
            structured.json_schema = json.dumps(dict(json_schema))
            config.structured_output_config = structured
        return config

    def _pipeline(self, genai: Any, scheduler_config: Any, properties: dict[str, Any]) -> Any:
        """The pipeline, from the GGUF's exact IR copy (see chatbot.engine.openvino_ir) where
        there is one, in the first precision the CPU plugin accepts."""
        plugin = openvino_precision.ask_cpu_plugin()
        configs = openvino_precision.candidates(self._settings.openvino_precision, plugin)

        def load_from(path: Path) -> Any:
            def build(precision: dict[str, Any]) -> Any:
                return genai.ContinuousBatchingPipeline(
                    str(path), scheduler_config, "CPU", {**properties, **precision}
                )

            pipeline, config = openvino_precision.first_accepted(configs, build, what=str(path))
            self.precision = config.name
            logger.info(
                "OpenVINO serves %s with %s precision (CHATBOT_OPENVINO_PRECISION=%s) on %s",
                path,
                config.name,
                self._settings.openvino_precision.value,
                plugin.describe(),
            )
            return pipeline

        gguf = self._source.gguf_path
        if gguf is not None and self._settings.openvino_ir_copy:
            ir = openvino_ir.ir_folder(self._settings.resolved_cache_dir(), gguf)
            problem = openvino_ir.ensure(gguf, ir)
            if problem is None:
                try:
                    pipeline = load_from(ir)
                except openvino_precision.AllRefused as refused:
                    # A damaged copy: made again at the next start; the GGUF serves this one.
                    logger.warning("cannot load the IR copy in %s (%s)", ir, refused.cause())
                    openvino_ir.discard(ir)
                else:
                    self.loaded_from = ir
                    return pipeline
            else:
                logger.warning(
                    "no exact OpenVINO IR copy of %s (%s): serving OpenVINO's own reading of "
                    "the GGUF, which rounds the offsets of 4-bit blocks, so replies can differ "
                    "from the file's model; %s for its exact weights",
                    gguf,
                    problem,
                    _OTHER_ENGINES,
                )
        elif gguf is not None:
            logger.warning(
                "CHATBOT_OPENVINO_IR_COPY=false: serving OpenVINO's own reading of %s, which "
                "rounds the offsets of 4-bit blocks (replies can differ from the file's model)",
                gguf,
            )
        try:
            pipeline = load_from(self._path)
        except openvino_precision.AllRefused as refused:
            raise ConfigurationError(_cannot_load(self._path, refused, plugin)) from refused
        self.loaded_from = self._path
        return pipeline

    def _load(self) -> Loaded:
        genai = _genai()
        scheduler_config = genai.SchedulerConfig()
        scheduler_config.cache_size = CACHE_SIZE_GB
        scheduler_config.dynamic_split_fuse = True
        scheduler_config.enable_prefix_caching = True
        scheduler_config.max_num_seqs = self._slots
        properties: dict[str, Any] = {}
        if self._settings.threads:
            properties["INFERENCE_NUM_THREADS"] = self._settings.threads
        pipeline = self._pipeline(genai, scheduler_config, properties)
        tokenizer = pipeline.get_tokenizer()
        eos = int(tokenizer.get_eos_token_id())
        configured = pipeline.get_config().stop_token_ids
        eos_ids = frozenset({eos, *(int(t) for t in configured)} - {-1})
        window = self._settings.context_window
        if window is None:
            declared = gguf_context_length(self._path) if self._source.gguf_path else None
            window = declared or DEFAULT_WINDOW
        scheduler = _OpenVINOScheduler(genai, pipeline)
        return Loaded(
            model=pipeline,
            tokenizer=tokenizer,
            prompt=_ChatPrompt(tokenizer),
            eos_ids=eos_ids,
            scheduler=scheduler,
            window=window,
            prompts=PromptWorker("openvino"),
        )
