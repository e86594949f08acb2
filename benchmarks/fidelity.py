"""How faithful each engine is to the model in the embedded GGUF file.

The reference is transformers' fp32 dequantization of the same GGUF: exactly the weights the
file holds. Two measures, for every engine and every precision configuration the machine's
OpenVINO CPU plugin reports:

- **Teacher-forced next-token distributions** (the method of llama.cpp's ``llama-perplexity
  --kl-divergence``): varied chat transcripts, rendered with the model's chat template (at least
  ``--min-tokens`` tokens in all), are fed to each runtime; at every position, KL(reference ||
  runtime), whether the likeliest token is the same (top-1 agreement), and the runtime's
  perplexity on the transcript. OpenVINO graphs are fed in chunks of ``--chunk`` tokens, so
  later tokens attend to the KV cache in the precision under test.
- **Greedy replies**: the share of ``--prompts`` greedy replies of ``--tokens`` tokens identical
  to the reference's, and the mean position of the first token that differs.

    PYTHONPATH=src python benchmarks/fidelity.py [--min-tokens 2000] [--prompts 50] [--tokens 32]

Rows: llama.cpp (when llama-cpp-python is installed), OpenVINO on the engine's IR copy with the
file's exact weights (chatbot.engine.gguf_exact) in each precision configuration, and OpenVINO on
its own reading of the GGUF (rounded 4-bit offsets) for comparison. Results go to
``benchmarks/results/fidelity.json`` with the CPU model and flags.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.bench.machine import describe

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
# Chats of several kinds (facts, code, lists, arithmetic, other languages, a system prompt):
# the assistant turns are what the runtimes are forced through.
TRANSCRIPTS: list[list[tuple[str, str]]] = [
    [
        ("user", "What is the capital of France?"),
        ("assistant", "The capital of France is Paris, on the river Seine."),
        ("user", "And how many people live there?"),
        (
            "assistant",
            "About two million people live in Paris itself, and around twelve "
            "million in the whole metropolitan area.",
        ),
    ],
    [
        ("system", "You are a helpful coding assistant. Answer with short code."),
        ("user", "Write a Python function that reverses a string."),
        (
            "assistant",
            "Here is one way:\n\n```python\ndef reverse(text: str) -> str:\n"
            "    return text[::-1]\n```\n\nSlicing with a step of -1 walks the string backwards.",
        ),
        ("user", "Now one that counts the vowels."),
        (
            "assistant",
            "```python\ndef count_vowels(text: str) -> int:\n"
            '    return sum(1 for ch in text.lower() if ch in "aeiou")\n```',
        ),
    ],
    [
        ("user", "Give me a shopping list for pancakes."),
        (
            "assistant",
            "Sure! For pancakes you need:\n1. Flour (200 g)\n2. Milk (300 ml)\n"
            "3. Two eggs\n4. A pinch of salt\n5. Butter for the pan\n6. Sugar or maple syrup",
        ),
    ],
    [
        ("user", "What is 17 times 23?"),
        (
            "assistant",
            "17 times 23 is 391. You can check it: 17 x 20 = 340 and 17 x 3 = 51, "
            "and 340 + 51 = 391.",
        ),
        ("user", "And 391 divided by 17?"),
        ("assistant", "391 divided by 17 is 23."),
    ],
    [
        ("user", "Comment dit-on 'good morning' en français ?"),
        ("assistant", "On dit « bonjour ». Le soir, on dit plutôt « bonsoir »."),
        ("user", "Und auf Deutsch?"),
        ("assistant", "Auf Deutsch sagt man „Guten Morgen“."),
    ],
    [
        ("system", "Be brief."),
        ("user", "Why is the sky blue?"),
        (
            "assistant",
            "Sunlight is scattered by the air, and blue light, with its shorter "
            "wavelength, is scattered much more than red light, so the sky looks blue.",
        ),
    ],
    [
        ("user", "Write a haiku about autumn."),
        (
            "assistant",
            "Crisp leaves drift and fall,\nthe old oak lets go of gold,\nquiet evening rain.",
        ),
        ("user", "Another one, about the sea."),
        (
            "assistant",
            "Waves fold into foam,\nsalt wind carries gull voices,\nthe tide keeps its time.",
        ),
    ],
    [
        ("user", "Summarize the plot of Romeo and Juliet in three sentences."),
        (
            "assistant",
            "Two young lovers from feuding families in Verona marry in secret. A "
            "chain of fights, banishment and a misunderstood plan leads Romeo to believe Juliet "
            "is dead. He takes poison, and when she wakes and finds him, she takes her own life, "
            "which finally reconciles the families.",
        ),
    ],
    [
        ("user", "How do I make a JSON object with a name and an age?"),
        (
            "assistant",
            'Like this:\n\n```json\n{"name": "Ada", "age": 36}\n```\n\nKeys are '
            "strings in double quotes; the age is a number.",
        ),
    ],
    [
        ("user", "What are the three states of water?"),
        (
            "assistant",
            "Water is a solid as ice, a liquid as water, and a gas as steam or "
            "water vapour. It freezes at 0 °C and boils at 100 °C at sea level.",
        ),
        ("user", "Which one is the densest?"),
        ("assistant", "Liquid water is the densest, which is why ice floats on it."),
    ],
]
RESULTS = Path(__file__).parent / "results" / "fidelity.json"

Generator = Callable[[list[list[int]], int, int], list[list[int]]]
Logprobs = Callable[[list[int]], np.ndarray]  # token ids -> [len, vocab] log-probabilities


def prompts(n: int) -> list[str]:
    return [t.format(topic) for t in TEMPLATES for topic in TOPICS][:n]


def transcripts(min_tokens: int, tokenizer: Any) -> list[list[int]]:
    """The chats above, then made-up chats about each topic, until ``min_tokens`` are reached."""
    chats = list(TRANSCRIPTS)
    for i, topic in enumerate(TOPICS * 4):
        chats.append(
            [
                ("user", TEMPLATES[i % 2].format(topic)),
                (
                    "assistant",
                    f"Here is something about {topic}: people have studied it for a "
                    f"long time, and it is often described in books, songs and school lessons. "
                    f"Many find {topic} fascinating because it connects to everyday life.",
                ),
                ("user", f"Thanks! What else should I know about {topic}?"),
                (
                    "assistant",
                    "Ask an expert or read a good encyclopedia article; both explain "
                    "the details, the history and the open questions much better than I can here.",
                ),
            ]
        )
    ids: list[list[int]] = []
    for chat in chats:
        text = tokenizer.apply_chat_template(
            [{"role": r, "content": c} for r, c in chat], tokenize=False
        )
        ids.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
        if sum(len(x) for x in ids) >= min_tokens:
            break
    return ids


def first_divergence(reply: Sequence[int], reference: Sequence[int], tokens: int) -> int:
    for i, (a, b) in enumerate(zip(reply, reference, strict=False)):
        if a != b:
            return i
    return tokens if len(reply) == len(reference) else min(len(reply), len(reference))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return result


@dataclass
class Agreement:
    kl: float
    top1: float
    perplexity: float
    tokens: int


def compare(
    reference: list[np.ndarray], runtime: list[np.ndarray], ids: list[list[int]]
) -> Agreement:
    kls, same, nll = [], [], []
    for ref, run, x in zip(reference, runtime, ids, strict=True):
        kls.append((np.exp(ref) * (ref - run)).sum(axis=-1)[:-1])
        same.append(ref.argmax(axis=-1)[:-1] == run.argmax(axis=-1)[:-1])
        nll.append(-run[np.arange(len(x) - 1), x[1:]])
    kl, agree, loss = np.concatenate(kls), np.concatenate(same), np.concatenate(nll)
    return Agreement(float(kl.mean()), float(agree.mean()), float(np.exp(loss.mean())), len(kl))


def transformers_model() -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatbot.engine.model_source import resolve

    source = resolve("embedded")
    tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        source.location, gguf_file=source.gguf_file, dtype="float32"
    ).eval()
    return tokenizer, model


def transformers_logprobs(model: Any) -> Logprobs:
    import torch

    def run(ids: list[int]) -> np.ndarray:
        with torch.inference_mode():
            logits = model(torch.tensor([ids])).logits[0].float().numpy()
        return log_softmax(logits)

    return run


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


def openvino_logprobs(folder: Path, properties: dict[str, Any], chunk: int) -> Logprobs:
    """The IR graph itself (stateful), fed ``chunk`` tokens at a time."""
    import openvino

    compiled = openvino.Core().compile_model(str(folder / "openvino_model.xml"), "CPU", properties)

    def run(ids: list[int]) -> np.ndarray:
        request = compiled.create_infer_request()
        request.reset_state()
        rows = []
        for start in range(0, len(ids), chunk):
            piece = ids[start : start + chunk]
            end = start + len(piece)
            out = request.infer(
                {
                    "input_ids": np.asarray([piece], dtype=np.int64),
                    "attention_mask": np.ones((1, end), dtype=np.int64),
                    "position_ids": np.arange(start, end, dtype=np.int64)[None],
                    "beam_idx": np.zeros(1, dtype=np.int32),
                }
            )
            rows.append(np.asarray(out["logits"][0], dtype=np.float32))
        return log_softmax(np.concatenate(rows))

    return run


def openvino_generate(folder: Path, properties: dict[str, Any]) -> Generator:
    def run(all_ids: list[list[int]], tokens: int, eos: int) -> list[list[int]]:
        import openvino_genai as genai
        from openvino import Tensor

        config = genai.SchedulerConfig()
        config.cache_size = 1
        config.dynamic_split_fuse = True
        config.enable_prefix_caching = True
        pipeline = genai.ContinuousBatchingPipeline(str(folder), config, "CPU", properties)
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


def llamacpp_model() -> Any:
    from llama_cpp import Llama

    from chatbot.engine.model_source import resolve

    return Llama(str(resolve("embedded").gguf_path), n_ctx=2048, logits_all=True, verbose=False)


def llamacpp_logprobs(llm: Any) -> Logprobs:
    def run(ids: list[int]) -> np.ndarray:
        llm.reset()
        llm.eval(ids)
        return log_softmax(np.asarray(llm.scores[: len(ids)], dtype=np.float32))

    return run


def llamacpp_generate(llm: Any) -> Generator:
    def run(all_ids: list[list[int]], tokens: int, eos: int) -> list[list[int]]:
        out = []
        for ids in all_ids:
            reply: list[int] = []
            for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
                if token == eos or len(reply) == tokens:
                    break
                reply.append(token)
            out.append(reply)
        return out

    return run


def reader_graph(scratch: Path) -> Path:
    """OpenVINO's own reading of the GGUF (rounded offsets), saved as IR to feed it directly."""
    import openvino_genai

    from chatbot.engine.model_source import resolve

    scratch.mkdir(parents=True, exist_ok=True)
    link = scratch / "model.gguf"
    if not link.exists():
        link.symlink_to(Path(str(resolve("embedded").gguf_path)).resolve())
    if not (scratch / "openvino_model.xml").is_file():
        openvino_genai.LLMPipeline(str(link), "CPU", enable_save_ov_model=True)
    return scratch


def exact_copy() -> Path:
    from chatbot.config import EngineSettings
    from chatbot.engine import openvino_ir
    from chatbot.engine.model_source import resolve

    gguf = resolve("embedded").gguf_path
    assert gguf is not None
    folder = openvino_ir.ir_folder(EngineSettings().resolved_cache_dir(), gguf)
    problem = openvino_ir.ensure(gguf, folder)
    if problem is not None:
        raise SystemExit(f"no exact IR copy: {problem}")
    return folder


def save(payload: dict[str, Any], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(payload, indent=2) + "\n")


@dataclass
class Row:
    name: str
    logprobs: Callable[[], Logprobs] | None
    generate: Callable[[], Generator] | None


def rows_to_run(exact: Path, reader: Path, llm: Any, chunk: int) -> list[Row]:
    from chatbot.engine import openvino_precision

    plugin = openvino_precision.ask_cpu_plugin()
    configs = [openvino_precision.F32]
    configs += [
        c
        for c in (openvino_precision.BF16, openvino_precision.F16)
        if c.name in openvino_precision.supported(plugin)
    ]
    configs.append(openvino_precision.PLUGIN)
    rows: list[Row] = []
    if llm is not None:
        rows.append(
            Row(
                "llama.cpp (same GGUF)",
                lambda: llamacpp_logprobs(llm),
                lambda: llamacpp_generate(llm),
            )
        )
    for config in configs:
        props = dict(config.properties)
        default = " (engine default)" if config is openvino_precision.F32 else ""
        rows.append(
            Row(
                f"openvino, exact IR copy, {config.name}{default}",
                lambda props=props: openvino_logprobs(exact, props, chunk),
                lambda props=props: openvino_generate(exact, props),
            )
        )
    for config in (openvino_precision.F32, openvino_precision.PLUGIN):
        props = dict(config.properties)
        rows.append(
            Row(
                f"openvino, its GGUF reader (rounded), {config.name}",
                lambda props=props: openvino_logprobs(reader, props, chunk),
                lambda props=props: openvino_generate(reader, props),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min-tokens", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/chatbot-fidelity"))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    tokenizer, model = transformers_model()
    eos = int(tokenizer.eos_token_id)
    forced = transcripts(args.min_tokens, tokenizer)
    started = time.perf_counter()
    reference_logprobs = [transformers_logprobs(model)(ids) for ids in forced]
    prompt_ids: list[list[int]] = [
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
    reference = hf_generate(model, 1)(prompt_ids, args.tokens, eos)
    logger.info("reference: transformers fp32 in %.0fs", time.perf_counter() - started)
    ref_ppl = compare(reference_logprobs, reference_logprobs, forced).perplexity

    try:
        llm = llamacpp_model()
    except ImportError:
        llm = None
        logger.info("llama.cpp: llama-cpp-python is not installed; row left out")
    rows = [Row("transformers fp32, batches of 8", None, lambda: hf_generate(model, 8))]
    rows += rows_to_run(exact_copy(), reader_graph(args.scratch), llm, args.chunk)

    payload: dict[str, Any] = {
        "machine": describe(),
        "transcripts": len(forced),
        "transcript_tokens": sum(len(x) - 1 for x in forced),
        "chunk": args.chunk,
        "reference_perplexity": ref_ppl,
        "prompts": len(prompt_ids),
        "tokens": args.tokens,
        "rows": [],
    }
    for row in rows:
        started = time.perf_counter()
        result: dict[str, Any] = {"engine": row.name}
        if row.logprobs is not None:
            run = row.logprobs()
            agreement = compare(reference_logprobs, [run(ids) for ids in forced], forced)
            result |= {
                "mean_kl": agreement.kl,
                "top1": agreement.top1,
                "perplexity": agreement.perplexity,
            }
        if row.generate is not None:
            replies = row.generate()(prompt_ids, args.tokens, eos)
            pairs = list(zip(replies, reference, strict=True))
            result["identical"] = sum(r == ref for r, ref in pairs) / len(pairs)
            result["mean_first_divergence"] = sum(
                first_divergence(r, ref, args.tokens) for r, ref in pairs
            ) / len(pairs)
        result["seconds"] = round(time.perf_counter() - started, 1)
        payload["rows"].append(result)
        logger.info("%s", result)
        save(payload, args.output)  # each row as it comes: a long run may be cut

    lines = [
        f"{payload['machine']['cpu']} ({' '.join(payload['machine']['flags'])}); "
        f"{payload['transcript_tokens']} teacher-forced tokens in {len(forced)} chats, reference "
        f"perplexity {ref_ppl:.2f}; {len(prompt_ids)} prompts x {args.tokens} greedy tokens",
        f"{'engine':<52} {'mean KL':>9} {'top-1':>7} {'ppl':>7} {'identical':>9}",
    ]
    for r in payload["rows"]:
        kl = f"{r['mean_kl']:.5f}" if "mean_kl" in r else "-"
        top1 = f"{r['top1']:.1%}" if "top1" in r else "-"
        ppl = f"{r['perplexity']:.2f}" if "perplexity" in r else "-"
        lines.append(f"{r['engine']:<52} {kl:>9} {top1:>7} {ppl:>7} {r['identical']:>9.0%}")
    logger.info("\n%s", "\n".join(lines))


if __name__ == "__main__":
    main()
