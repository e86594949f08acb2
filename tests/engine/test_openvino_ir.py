"""The OpenVINO IR copy of a GGUF: made at the first start, the file's exact model, kept."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from chatbot.config import EngineSettings
from chatbot.domain import GenerationParams, Message
from chatbot.engine import openvino_ir
from chatbot.engine.base import collect
from chatbot.engine.model_source import embedded_gguf_path

pytest.importorskip("openvino_genai")

from chatbot.engine.openvino_engine import OpenVINOEngine
from chatbot.engine.transformers_engine import TransformersEngine
from tests.fixtures.engines import run_async

PROMPTS = ["Hi", "What is the capital of France?", "Name three fruits.", "Count to five."]


def _engine(cache: Path, *, copy: bool = True) -> OpenVINOEngine:
    settings = EngineSettings(
        engine="openvino", cache_dir=cache, max_batch_size=4, openvino_ir_copy=copy
    )
    engine = OpenVINOEngine(settings)
    engine.load()
    return engine


def _replies(engine: OpenVINOEngine) -> list[str]:
    async def all_at_once() -> list[str]:
        params = GenerationParams(max_new_tokens=24)
        replies = [collect(engine.generate([Message.user(p)], params)) for p in PROMPTS]
        return [text for text, _ in await asyncio.gather(*replies)]

    return run_async(all_at_once())


@pytest.mark.slow
def test_the_first_start_makes_the_exact_copy_and_the_next_start_loads_it(
    tmp_path: Path, embedded_engine: TransformersEngine
) -> None:
    gguf = embedded_gguf_path()
    folder = openvino_ir.ir_folder(tmp_path, gguf)
    first = _engine(tmp_path)
    try:
        assert first.loaded_from == folder  # made now, before the first reply
        from_copy = _replies(first)
    finally:
        first.close()
    assert openvino_ir.cached(folder)
    assert not folder.with_name(folder.name + ".lock").exists()
    assert not any(p.name.startswith(".converting-") for p in folder.parent.iterdir())
    # The copy is the file's model: greedy replies equal transformers' fp32 dequantization.
    reference = run_async(_replies_of(embedded_engine))
    assert from_copy == reference
    assert all(from_copy)

    second = _engine(tmp_path)
    try:
        assert second.loaded_from == folder
        assert _replies(second) == from_copy  # batched, token for token
    finally:
        second.close()


async def _replies_of(engine: TransformersEngine) -> list[str]:
    params = GenerationParams(max_new_tokens=24)
    return [(await collect(engine.generate([Message.user(p)], params)))[0] for p in PROMPTS]


@pytest.mark.slow
def test_a_copy_that_does_not_load_is_dropped_and_the_gguf_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gguf = embedded_gguf_path()
    folder = openvino_ir.ir_folder(tmp_path, gguf)
    folder.mkdir(parents=True)
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        (folder / name).write_text("<not a model/>")
    (folder / ".complete").write_text("ok\n")
    assert openvino_ir.cached(folder)

    engine = _engine(tmp_path)
    try:
        assert engine.loaded_from == gguf
        assert all(_replies(engine))
    finally:
        engine.close()
    assert not folder.exists()  # removed, so the next start makes a good one
    assert "cannot load the IR copy" in caplog.text


@pytest.mark.slow
def test_without_the_copy_the_gguf_serves_and_says_it_is_rounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gguf = embedded_gguf_path()
    engine = _engine(tmp_path, copy=False)
    try:
        assert engine.loaded_from == gguf
        assert all(_replies(engine))
    finally:
        engine.close()
    folder = openvino_ir.ir_folder(tmp_path, gguf)
    assert not folder.exists() and not folder.with_name(folder.name + ".lock").exists()
    assert "CHATBOT_OPENVINO_IR_COPY=false" in caplog.text and "rounds" in caplog.text


def test_one_conversion_at_a_time_and_a_dead_one_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "openvino" / "model-0123"
    lock = folder.with_name(folder.name + ".lock")
    folder.parent.mkdir(parents=True)
    lock.touch()  # another server is converting: this one waits for it, up to wait_s
    problem = openvino_ir.ensure(tmp_path / "model.gguf", folder, wait_s=0.2)
    assert problem is not None and "did not finish" in problem
    assert lock.exists()  # not taken from a live conversion
    assert openvino_ir._take_lock(lock) is False
    old = time.time() - openvino_ir.STALE_LOCK_S - 60
    os.utime(lock, (old, old))  # ... or it died long ago
    assert openvino_ir._take_lock(lock) is True
    assert time.time() - lock.stat().st_mtime < 60


@pytest.mark.slow
def test_a_file_that_cannot_be_converted_is_not_tried_at_every_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    folder = openvino_ir.ir_folder(tmp_path, broken)
    folder.parent.mkdir(parents=True)
    lock = folder.with_name(folder.name + ".lock")
    lock.touch()  # taken, as ensure does before it launches the process
    assert openvino_ir.main([str(broken), str(folder)]) == 1
    failed = folder.with_name(folder.name + ".failed")
    assert failed.read_text().strip(), "the error is kept"
    assert not lock.exists() and not folder.exists()
    assert not any(p.name.startswith(".converting-") for p in folder.parent.iterdir())
    problem = openvino_ir.ensure(broken, folder)  # the kept error, without converting again
    assert problem == failed.read_text().strip()
    assert not lock.exists()


@pytest.mark.slow
def test_with_no_arguments_it_copies_the_configured_model_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What an image build runs (deploy/Dockerfile): the model and cache of the settings.
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    monkeypatch.setenv("CHATBOT_MODEL", str(broken))
    monkeypatch.setenv("CHATBOT_CACHE_DIR", str(tmp_path / "cache"))
    assert openvino_ir.main([]) == 1
    folder = openvino_ir.ir_folder(tmp_path / "cache", broken)
    assert folder.with_name(folder.name + ".failed").is_file()
    monkeypatch.setenv("CHATBOT_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert openvino_ir.main([]) == 2  # not a GGUF: nothing to copy


@pytest.mark.slow
def test_a_tokenizer_that_reads_chats_differently_is_refused() -> None:
    import openvino_genai

    gguf = str(embedded_gguf_path())
    reference, candidate = openvino_genai.Tokenizer(gguf), openvino_genai.Tokenizer(gguf)
    openvino_ir.check_same_tokens(reference, candidate)  # the same reading passes
    candidate.set_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(RuntimeError, match="template"):
        openvino_ir.check_same_tokens(reference, candidate)


def test_the_converter_runs_as_a_module() -> None:
    # ensure runs ``python -m chatbot.engine.openvino_ir`` in a child: it must parse there.
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "chatbot.engine.openvino_ir", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "GGUF" in result.stdout or "gguf" in result.stdout
