"""How far each engine's greedy replies stay from transformers fp32 on the embedded GGUF.

Every engine gets the same prompt token ids (the GGUF's chat template, rendered and tokenized
once by transformers) and decodes 32 greedy tokens, stopping at end-of-sequence. The reference
is transformers in fp32, one prompt at a time. For each engine: the share of replies identical
to the reference, and the mean position of the first token that differs (32 when identical).

    PYTHONPATH=src python benchmarks/fidelity.py [--prompts 50] [--tokens 32]

Rows: transformers batched (8 prompts per left-padded batch), OpenVINO with an f32 KV cache (the
engine's default, ``KV_CACHE_PRECISION``) and with the CPU plugin's default u8 KV cache, and
llama.cpp when llama-cpp-python is installed.
Results go to ``benchmarks/results/fidelity.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("fidelity")

TOPICS = [
    "the moon", "volcanoes", "coffee", "the Roman empire", "photosynthesis", "chess",
    "the ocean", "bicycles", "honey bees", "jazz", "rainbows", "the internet", "penguins",
    "bread", "the Eiffel Tower", "electricity", "dinosaurs", "tea", "football", "gravity",
    "the desert", "whales", "paper", "clocks", "mountains",
]  # fmt: skip
TEMPLATES = [
    "Tell me one interesting fact about {}.",
    "Explain {} to a child in two sentences.",
]
RESULTS = Path(__file__).parent / "results" / "fidelity.json"

Generator = Callable[[list[list[int]], int, int], list[list[int]]]


def prompts(n: int) -> list[str]:
    return [t.format(topic) for t in TEMPLATES for topic in TOPICS][:n]


def first_divergence(reply: Sequence[int], reference: Sequence[int], tokens: int) -> int:
    for i, (a, b) in enumerate(zip(reply, reference, strict=False)):
        if a != b:
            return i
    return tokens if len(reply) == len(reference) else min(len(reply), len(reference))


def transformers_model() -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatbot.engine.model_source import resolve

    source = resolve("embedded")
    tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        source.location, gguf_file=source.gguf_file, dtype="float32"
    ).eval()
    return tokenizer, model


def hf_generate(model: Any, batch_size: int) -> Generator:
    import torch

    def run(all_ids: list[list[int]], tokens: int, eos: int) -> list[list[int]]:
        out: list[list[int]] = []
        for start in range(0, len(all_ids), batch_size):
            batch = all_ids[start : start + batch_size]
            width = max(len(ids) for ids in batch)
            input_ids = torch.tensor([[eos] * (width - len(i)) + i for i in batch])
            mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in batch])
            with torch.inference_mode():
                result = model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    max_new_tokens=tokens,
                    do_sample=False,
                    pad_token_id=eos,
                    eos_token_id=eos,
                )
            out += [strip(row[width:].tolist(), eos) for row in result]
        return out

    return run


def strip(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids


def openvino_generate(kv_cache_precision: str | None) -> Generator:
    def run(all_ids: list[list[int]], tokens: int, eos: int) -> list[list[int]]:
        import numpy as np
        import openvino_genai as genai
        from openvino import Tensor

        from chatbot.engine.model_source import resolve

        config = genai.SchedulerConfig()
        config.cache_size = 1
        config.dynamic_split_fuse = True
        config.enable_prefix_caching = True
        properties = {"KV_CACHE_PRECISION": kv_cache_precision} if kv_cache_precision else {}
        pipeline = genai.ContinuousBatchingPipeline(
            str(resolve("embedded").gguf_path), config, "CPU", properties
        )
        out = []
        for i, ids in enumerate(all_ids):  # one at a time, like the reference
            generation = genai.GenerationConfig()
            generation.max_new_tokens = tokens
            generation.stop_token_ids = {eos}
            handle = pipeline.add_request(i, Tensor(np.asarray([ids], dtype=np.int64)), generation)
            reply: list[int] = []
            while pipeline.has_non_finished_requests():
                pipeline.step()
                if handle.can_read():
                    for output in handle.read().values():
                        reply += output.generated_ids
            out.append(strip(reply, eos))
        return out

    return run


def llamacpp_generate(all_ids: list[list[int]], tokens: int, eos: int) -> list[list[int]]:
    from llama_cpp import Llama

    from chatbot.engine.model_source import resolve

    llm = Llama(str(resolve("embedded").gguf_path), n_ctx=1024, verbose=False)
    out = []
    for ids in all_ids:
        reply: list[int] = []
        for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            if token == eos or len(reply) == tokens:
                break
            reply.append(token)
        out.append(reply)
    return out


def save(rows: list[dict[str, Any]], prompts: int, tokens: int) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {"prompts": prompts, "tokens": tokens, "rows": rows}
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    tokenizer, model = transformers_model()
    eos = int(tokenizer.eos_token_id)
    all_ids: list[list[int]] = [  # rendered and tokenized as TransformersEngine does
        list(
            tokenizer(
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
                ),
                add_special_tokens=False,
            )["input_ids"]
        )
        for p in prompts(args.prompts)
    ]
    started = time.perf_counter()
    reference = hf_generate(model, 1)(all_ids, args.tokens, eos)
    logger.info("reference: transformers fp32 in %.0fs", time.perf_counter() - started)

    engines: dict[str, Generator] = {
        "transformers fp32, batches of 8": hf_generate(model, 8),
        "openvino, f32 KV cache (engine default)": openvino_generate("f32"),
        "openvino, u8 KV cache (plugin default)": openvino_generate(None),
    }
    try:
        import llama_cpp  # noqa: F401

        engines["llama.cpp"] = llamacpp_generate
    except ImportError:
        logger.info("llama.cpp: llama-cpp-python is not installed; row left out")

    rows = []
    for name, generate in engines.items():
        started = time.perf_counter()
        replies = generate(all_ids, args.tokens, eos)
        seconds = time.perf_counter() - started
        same = sum(r == ref for r, ref in zip(replies, reference, strict=True))
        divergence = [
            first_divergence(r, ref, args.tokens) for r, ref in zip(replies, reference, strict=True)
        ]
        rows.append(
            {
                "engine": name,
                "identical": same / len(reference),
                "mean_first_divergence": sum(divergence) / len(divergence),
                "seconds": round(seconds, 1),
            }
        )
        logger.info("%s done in %.0fs: %s", name, seconds, rows[-1])
        save(rows, len(reference), args.tokens)  # each row as it comes: a long run may be cut

    lines = [
        f"{len(reference)} prompts, {args.tokens} greedy tokens, vs transformers fp32",
        f"{'engine':<40} {'identical':>9} {'mean first divergence':>22}",
    ]
    lines += [
        f"{r['engine']:<40} {r['identical']:>9.0%} {r['mean_first_divergence']:>22.1f}"
        for r in rows
    ]
    logger.info("\n%s", "\n".join(lines))


if __name__ == "__main__":
    main()
