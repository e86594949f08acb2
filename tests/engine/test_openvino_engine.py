"""The OpenVINO engine on the embedded GGUF: chunk contract, batching, cancel, stops, context."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatbot.config import EngineSettings
from chatbot.domain import FinishReason, GenerationParams, Message
from chatbot.engine import create_engine, openvino_precision
from chatbot.engine.base import Chunk, collect
from chatbot.errors import ConfigurationError, ContextOverflowError

pytest.importorskip("openvino_genai")

from chatbot.engine.openvino_engine import OpenVINOEngine
from tests.fixtures.engines import run_async
from tests.fixtures.prompts import LONG_PROMPT

pytestmark = pytest.mark.slow

PROMPTS = ["Hi", "What is the capital of France?", "Name three fruits.", "Tell me about cats."]
WINDOW = 512


@pytest.fixture(scope="session")
def ov_engine() -> Iterator[OpenVINOEngine]:
    """A small window, so overflow and dropped turns are cheap to provoke."""
    engine = OpenVINOEngine(
        EngineSettings(engine="openvino", max_batch_size=4, context_window=WINDOW)
    )
    engine.load()
    yield engine
    engine.close()


def greedy(n: int) -> GenerationParams:
    return GenerationParams(max_new_tokens=n)


async def reply(engine: OpenVINOEngine, prompt: str, params: GenerationParams) -> str:
    text, _ = await collect(engine.generate([Message.user(prompt)], params))
    return text


def test_the_factory_builds_it_from_the_setting() -> None:
    engine = create_engine(EngineSettings(engine="openvino"))
    assert isinstance(engine, OpenVINOEngine)
    assert engine.model_id == "SmolLM2-135M-Instruct"


def test_a_folder_without_openvino_ir_names_the_other_engines(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CHATBOT_ENGINE=transformers"):
        OpenVINOEngine(EngineSettings(engine="openvino", model=str(tmp_path)))


def test_a_file_openvino_cannot_read_names_the_cause_and_the_other_engines(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    engine = OpenVINOEngine(
        EngineSettings(engine="openvino", model=str(broken), cache_dir=tmp_path)
    )
    with pytest.raises(ConfigurationError, match="CHATBOT_ENGINE=transformers") as raised:
        engine.load()
    message = str(raised.value)
    # The reader's own words, once, and no guess about precision or quantization.
    assert f"OpenVINO cannot load {broken}: " in message
    assert "the same with every precision tried: f32, plugin" in message
    assert "supports only some" not in message


def test_every_precision_the_cpu_plugin_accepts_loads_and_answers() -> None:
    plugin = openvino_precision.ask_cpu_plugin()  # asked here, not assumed
    for name in openvino_precision.supported(plugin):
        engine = OpenVINOEngine(
            EngineSettings(engine="openvino", max_batch_size=2, openvino_precision=name)
        )
        engine.load()
        try:
            assert engine.precision == name
            text = run_async(reply(engine, "What is the capital of France?", greedy(8)))
            assert text.strip(), f"no reply with {name} precision"
        finally:
            engine.close()


def test_a_refused_configuration_falls_back_with_a_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = openvino_precision.ask_cpu_plugin()
    # A KV cache unlike the inference precision: what the plugin refused on a BF16 CPU when
    # the engine forced f32, and refuses here the other way round, if it refuses at all ...
    other = "f32" if plugin.default_precision != "f32" else "bf16"
    mismatched = openvino_precision.PrecisionConfig("mismatched", {"KV_CACHE_PRECISION": other})
    # ... and one no plugin accepts, so the fallback is exercised on every CPU.
    refused = openvino_precision.PrecisionConfig("refused", {"KV_CACHE_PRECISION": "none"})
    monkeypatch.setattr(
        openvino_precision,
        "candidates",
        lambda setting, plugin: [refused, mismatched, openvino_precision.F32],
    )
    engine = OpenVINOEngine(EngineSettings(engine="openvino", max_batch_size=2))
    with caplog.at_level(logging.INFO):
        engine.load()
    try:
        assert engine.precision in {"mismatched", "f32"}
        assert "refused" in caplog.text and "with refused precision" in caplog.text
        assert "trying the next configuration" in caplog.text
        assert f"with {engine.precision} precision (CHATBOT_OPENVINO_PRECISION=auto)" in caplog.text
        assert run_async(reply(engine, "Hi", greedy(6))).strip()
    finally:
        engine.close()


def test_when_every_precision_is_refused_the_error_says_which_setting_helps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refusals = [
        openvino_precision.PrecisionConfig(name, {"KV_CACHE_PRECISION": value})
        for name, value in (("first", "none"), ("second", "neither"))
    ]
    monkeypatch.setattr(openvino_precision, "candidates", lambda setting, plugin: refusals)
    engine = OpenVINOEngine(
        EngineSettings(engine="openvino", openvino_ir_copy=False, max_batch_size=2)
    )
    with pytest.raises(ConfigurationError) as raised:
        engine.load()
    message = str(raised.value)
    assert "refused every precision" in message
    assert "with first precision" in message and "with second precision" in message
    assert "none" in message and "neither" in message  # the plugin's own words for each
    assert "CHATBOT_OPENVINO_PRECISION" in message and "f32" in message


def test_the_chunk_contract(ov_engine: OpenVINOEngine) -> None:
    async def run() -> list[Chunk]:
        return [c async for c in ov_engine.generate([Message.user("Hi")], greedy(32))]

    chunks = run_async(run())
    first, last = chunks[0], chunks[-1]
    assert first.text == "" and first.usage.prompt_tokens > 5
    assert first.usage.completion_tokens == 0 and not first.finished
    assert all(not c.finished for c in chunks[:-1])
    assert last.finish_reason is FinishReason.STOP
    assert last.usage.prompt_tokens == first.usage.prompt_tokens
    assert 1 <= last.usage.completion_tokens < 32
    assert "".join(c.text for c in chunks).strip()


def test_the_limit_ends_with_length_and_exact_usage(ov_engine: OpenVINOEngine) -> None:
    text, last = run_async(
        collect(ov_engine.generate([Message.user("Write a long story.")], greedy(7)))
    )
    assert text
    assert last.finish_reason is FinishReason.LENGTH
    assert last.usage.completion_tokens == 7


def test_ignore_eos_generates_to_the_limit(ov_engine: OpenVINOEngine) -> None:
    hello = [Message.user("Say hello.")]
    _, ended = run_async(collect(ov_engine.generate(hello, greedy(60))))
    assert ended.finish_reason is FinishReason.STOP
    limit = ended.usage.completion_tokens + 20
    params = GenerationParams(max_new_tokens=limit, temperature=0.0, ignore_eos=True)
    text, last = run_async(collect(ov_engine.generate(hello, params)))
    assert last.finish_reason is FinishReason.LENGTH
    assert last.usage.completion_tokens == limit and text


def test_batched_greedy_replies_equal_one_at_a_time(ov_engine: OpenVINOEngine) -> None:
    async def run() -> tuple[list[str], list[str]]:
        alone = [await reply(ov_engine, p, greedy(24)) for p in PROMPTS]
        together = await asyncio.gather(*(reply(ov_engine, p, greedy(24)) for p in PROMPTS))
        return alone, list(together)

    # Guaranteed by the f32 configuration (f32 inference and KV cache), which auto takes on
    # every CPU plugin; with the plugin's u8 cache, 1 of 4 prompts parted when batched.
    assert ov_engine.precision == "f32"
    alone, together = run_async(run())
    assert together == alone
    assert len(set(alone)) == len(alone)


def test_cancel_inside_a_batch_leaves_the_others_intact(ov_engine: OpenVINOEngine) -> None:
    async def run() -> tuple[list[str], list[str], int]:
        alone = [await reply(ov_engine, p, greedy(40)) for p in PROMPTS[1:]]
        others = [asyncio.create_task(reply(ov_engine, p, greedy(40))) for p in PROMPTS[1:]]
        stream = ov_engine.generate([Message.user("Write a long story.")], greedy(200))
        seen = 0
        async for chunk in stream:
            seen += bool(chunk.text)
            if seen == 3:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        return alone, list(await asyncio.gather(*others)), seen

    alone, together, seen = run_async(run())
    assert seen == 3
    assert together == alone


def test_a_cancelled_request_leaves_the_engine_within_a_step(ov_engine: OpenVINOEngine) -> None:
    async def run() -> int:
        stream = ov_engine.generate([Message.user(LONG_PROMPT)], greedy(400))
        async for chunk in stream:
            if chunk.text:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60  # the model thread drops it at its next turn
        while ov_engine._state().scheduler._rows and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return len(ov_engine._state().scheduler._rows)

    assert run_async(run()) == 0


def test_a_request_joins_a_running_batch(ov_engine: OpenVINOEngine) -> None:
    async def run() -> tuple[str, str, bool]:
        alone = await reply(ov_engine, PROMPTS[1], greedy(12))
        decoding = asyncio.Event()

        async def long_reply() -> None:
            async for chunk in ov_engine.generate([Message.user(LONG_PROMPT)], greedy(300)):
                if chunk.text:
                    decoding.set()

        long_task = asyncio.create_task(long_reply())
        await decoding.wait()  # the long reply is decoding now
        joined = await reply(ov_engine, PROMPTS[1], greedy(12))
        long_still_running = not long_task.done()
        await long_task
        return alone, joined, long_still_running

    alone, joined, long_still_running = run_async(run())
    assert long_still_running  # the short request did not wait for the long one
    assert joined == alone


def test_stop_sequences_never_leak_across_chunks(ov_engine: OpenVINOEngine) -> None:
    messages = [Message.user("Tell me about cats.")]

    async def chunks_of(params: GenerationParams) -> list[str]:
        return [c.text async for c in ov_engine.generate(messages, params) if c.text]

    pieces = run_async(chunks_of(greedy(40)))
    # A stop string made of the end of one chunk and the start of the next.
    k = next(i for i in range(2, len(pieces) - 1) if len(pieces[i]) >= 2)
    stop = pieces[k][-2:] + pieces[k + 1][:2]
    full = "".join(pieces)
    expected = full[: full.index(stop)]

    out = run_async(chunks_of(greedy(40).model_copy(update={"stop": (stop,)})))
    shown = ""
    for piece in out:
        shown += piece
        assert stop not in shown
        assert expected.startswith(shown)
    assert shown == expected


def test_context_overflow_raises_before_any_chunk(ov_engine: OpenVINOEngine) -> None:
    async def first() -> Chunk:
        stream = ov_engine.generate([Message.user("word " * (WINDOW + 50))], greedy(8))
        return await stream.__anext__()

    with pytest.raises(ContextOverflowError):
        run_async(first())


def test_old_turns_are_dropped_to_fit(ov_engine: OpenVINOEngine) -> None:
    history = []
    for i in range(6):
        history += [Message.user(f"Story {i}: " + "tale " * 60), Message.assistant("Nice.")]
    history.append(Message.user("Hi"))
    _, last = run_async(collect(ov_engine.generate(history, greedy(8))))
    assert last.dropped_messages > 0
    assert last.usage.prompt_tokens + 8 <= WINDOW


def test_a_seed_repeats_a_sampled_reply(ov_engine: OpenVINOEngine) -> None:
    params = GenerationParams(max_new_tokens=16, temperature=0.9, top_p=0.9, seed=7)

    async def run() -> list[str]:
        return [await reply(ov_engine, "Invent a name for a cat.", params) for _ in range(2)]

    first, second = run_async(run())
    assert first == second


def test_a_nucleus_too_small_for_float32_is_greedy_not_a_hang(ov_engine: OpenVINOEngine) -> None:
    """Found by the API fuzzer: top_p=5e-324 became 0 in OpenVINO, which refused it, and the
    request waited forever. Such a nucleus holds only the likeliest token: greedy."""
    tiny = GenerationParams(max_new_tokens=6, temperature=1.0, top_p=5e-324)

    async def run() -> tuple[str, str]:
        return (
            await reply(ov_engine, "Name a colour.", tiny),
            await reply(ov_engine, "Name a colour.", greedy(6)),
        )

    sampled, expected = run_async(asyncio.wait_for(run(), 60))
    assert sampled == expected


def test_json_schema_constrains_the_reply(ov_engine: OpenVINOEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    text, _ = run_async(
        collect(
            ov_engine.generate(
                [Message.user("Give me a person as JSON.")], greedy(60), json_schema=schema
            )
        )
    )
    value = json.loads(text)
    assert isinstance(value["name"], str) and isinstance(value["age"], int)
