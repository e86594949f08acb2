"""The OpenVINO IR copy of a GGUF model that the engine serves: the file's exact weights.

OpenVINO GenAI's GGUF reader rounds the per-block offsets of formats such as Q4_1 (mean KL 0.50
per token against the file's own model on the embedded Q4_1; :mod:`chatbot.engine.gguf_exact`),
so the engine never serves that graph as read: the first start converts it once, restores the
exact weights, and saves the result here; later starts load it (2.7-3.6 s instead of the
reader's 5.2-6.2 s, which rebuilds the graph at every load). The graph keeps its 4-bit
weights, so the copy is as fast as the reader's graph.

The conversion runs in a child process (``python -m chatbot.engine.openvino_ir``): a native
failure there, or the memory of dequantizing the weights, stays out of the server. A lock file
keeps replicas starting at once to one conversion; the others wait for its copy. The tokenizer
beside the graph is the one the reader built from the GGUF (checked by
:func:`check_same_tokens`), so the copy reads and writes text exactly as the GGUF does.
A file that cannot be converted is marked failed with its error and not tried at every start.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from chatbot.engine import gguf_cache, gguf_exact

logger = logging.getLogger(__name__)

MODEL_XML = "openvino_model.xml"
_FILES = (MODEL_XML, "openvino_tokenizer.xml", "openvino_detokenizer.xml")
_LINK = "model.gguf"
# A conversion that left its lock behind (killed, machine restarted) is retried after this.
STALE_LOCK_S = 600.0


def ir_folder(cache_root: Path, gguf_path: Path) -> Path:
    """Where the IR copy of ``gguf_path`` lives (a new folder whenever the file changes)."""
    return gguf_cache.cache_folder(cache_root, gguf_path, kind="openvino")


def cached(folder: Path) -> bool:
    return gguf_cache.cached(folder) and all((folder / name).is_file() for name in _FILES)


def convert(gguf_path: Path, folder: Path) -> None:
    """Write the IR copy (exact graph, tokenizer, detokenizer) atomically: all of it or nothing.

    Raises if a weight could not be restored: a copy that is not the file's model is no copy.
    """
    import openvino
    import openvino_genai

    with gguf_cache.writing(folder) as scratch:
        link = scratch / _LINK
        try:
            link.symlink_to(gguf_path.resolve())
        except OSError:  # no symlinks here (some Windows setups): a copy does as well
            shutil.copyfile(gguf_path, link)
        # OpenVINO writes the graph (and tokenizers) it built next to the GGUF it read.
        pipeline = openvino_genai.LLMPipeline(str(link), "CPU", enable_save_ov_model=True)
        if not (scratch / MODEL_XML).is_file():
            raise RuntimeError(f"OpenVINO did not write {MODEL_XML} for {gguf_path}")
        if not all((scratch / name).is_file() for name in _FILES[1:]):
            _convert_tokenizers(scratch)
        model = openvino.Core().read_model(str(scratch / MODEL_XML))
        report = gguf_exact.restore(model, gguf_path)
        if not report.faithful:
            raise RuntimeError(
                f"{len(report.unmatched)} weights of {gguf_path.name} could not be restored "
                f"to the file's values ({', '.join(report.unmatched[:3])}, ...)"
            )
        exact = scratch / "exact.xml"
        openvino.save_model(model, str(exact), compress_to_fp16=False)
        del model  # it maps the reader's .bin, replaced below
        exact.replace(scratch / MODEL_XML)
        exact.with_suffix(".bin").replace((scratch / MODEL_XML).with_suffix(".bin"))
        link.unlink()
        check_same_tokens(pipeline.get_tokenizer(), openvino_genai.Tokenizer(str(scratch)))
    logger.info("saved an OpenVINO IR copy of %s with its exact weights in %s", gguf_path, folder)


def _convert_tokenizers(scratch: Path) -> None:
    """For an OpenVINO GenAI that does not save its tokenizers: transformers' reading."""
    import openvino
    from openvino_tokenizers import convert_tokenizer
    from transformers import AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(scratch, gguf_file=_LINK)
    tokenizer, detokenizer = convert_tokenizer(hf_tokenizer, with_detokenizer=True)
    openvino.save_model(tokenizer, str(scratch / "openvino_tokenizer.xml"))
    openvino.save_model(detokenizer, str(scratch / "openvino_detokenizer.xml"))


# Chats the two tokenizers must turn into the same ids: plain text, Unicode, text that looks like
# the template's own markers, runs of whitespace, and a multi-turn history with a system prompt.
PROBE_CHATS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("user", "Hi"),),
    (("user", "Ünïcødé, 日本語, emoji 🎉 and <|im_end|> <s> </s> [INST]"),),
    (("system", "Be brief."), ("user", "  tabs\t\tand   spaces\n\nnew lines ")),
    (("user", "a"), ("assistant", "b"), ("user", "What is 2+2?")),
)


def check_same_tokens(reference: Any, candidate: Any) -> None:
    """Raise unless ``candidate`` (the IR copy's tokenizer) matches the GGUF's own.

    transformers and OpenVINO read a GGUF's vocabulary separately; where they disagree for some
    model, that model keeps loading from its GGUF (the conversion is marked failed).
    """

    def facts(tokenizer: Any) -> tuple[object, ...]:
        return tokenizer.chat_template, tokenizer.get_eos_token_id(), tokenizer.get_bos_token_id()

    if facts(reference) != facts(candidate):
        raise RuntimeError("the converted tokenizer's template or special tokens differ")
    for chat in PROBE_CHATS:
        messages = [{"role": role, "content": content} for role, content in chat]
        text = reference.apply_chat_template(messages, add_generation_prompt=True)
        ids = [
            t.encode(text, add_special_tokens=False).input_ids.data[0].tolist()
            for t in (reference, candidate)
        ]
        if ids[0] != ids[1]:
            raise RuntimeError(f"the converted tokenizer reads {text!r} differently")
        for skip in (True, False):
            texts = [t.decode(ids[0], skip_special_tokens=skip) for t in (reference, candidate)]
            if texts[0] != texts[1]:
                raise RuntimeError(f"the converted detokenizer writes {text!r} differently")


def discard(folder: Path) -> None:
    """Remove a copy that would not load, so the next start from the GGUF makes it again."""
    shutil.rmtree(folder, ignore_errors=True)


def ensure(gguf_path: Path, folder: Path, *, wait_s: float = STALE_LOCK_S) -> str | None:
    """Make the copy now unless it is there: None once it is, else why there is none.

    Another process converting the same file (a replica starting at once) holds the lock; this
    one waits for its copy, up to ``wait_s``.
    """
    if cached(folder):
        return None
    if (failure := _failure(folder)) is not None:  # not retried at every start
        return failure
    lock = _lock_path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        if _take_lock(lock):
            logger.info(
                "making an OpenVINO IR copy of %s with its exact weights (once per file)",
                gguf_path,
            )
            return _convert_in_a_child(gguf_path, folder)
    except OSError as exc:  # a read-only cache or no room
        with contextlib.suppress(OSError):
            lock.unlink()
        return f"cannot write in {folder.parent}: {exc}"
    logger.info("waiting for the OpenVINO IR copy another process is making in %s", folder)
    deadline = time.monotonic() + wait_s
    while lock.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if cached(folder):
        return None
    return _failure(folder) or f"the conversion holding {lock} did not finish in {wait_s:.0f} s"


def _convert_in_a_child(gguf_path: Path, folder: Path) -> str | None:
    try:
        result = subprocess.run(
            [sys.executable, "-m", __name__, str(gguf_path), str(folder)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        with contextlib.suppress(OSError):
            _lock_path(folder).unlink()
    if cached(folder):
        return None
    tail = " ".join(result.stderr.strip().splitlines()[-3:])
    return _failure(folder) or f"the conversion exited with status {result.returncode}: {tail}"


def _failure(folder: Path) -> str | None:
    """The error a failed conversion of this file left behind, if one did."""
    failed = _failed_path(folder)
    if not failed.exists():
        return None
    return failed.read_text(errors="replace").strip() or "an earlier conversion failed"


def _lock_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".lock")


def _failed_path(folder: Path) -> Path:
    """Written when a conversion fails, with the error; a changed GGUF gets a new folder."""
    return folder.with_name(folder.name + ".failed")


def _take_lock(lock: Path) -> bool:
    """Create ``lock``, or take over one left by a conversion that died."""
    with contextlib.suppress(FileNotFoundError):
        if time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            lock.unlink()
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m chatbot.engine.openvino_ir [GGUF FOLDER]``: make the copy now.

    With no arguments, for the model the settings name (``CHATBOT_MODEL``, ``CHATBOT_CACHE_DIR``):
    an image build and ``make install`` run this, so the first start finds the copy. With them,
    it is the child a starting engine waits for, and releases the lock the engine took for it.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gguf", type=Path, nargs="?", help="the GGUF file")
    parser.add_argument("folder", type=Path, nargs="?", help="where its copy goes")
    args = parser.parse_args(argv)
    if args.gguf is None:
        return _copy_the_configured_model()
    if args.folder is None:
        parser.error("give both the GGUF file and the folder, or neither")
    try:
        return _copy(args.gguf, args.folder)
    finally:
        with contextlib.suppress(OSError):
            _lock_path(args.folder).unlink()


def _copy_the_configured_model() -> int:
    from chatbot.config import EngineSettings, load
    from chatbot.engine.model_source import resolve

    settings = load(EngineSettings)
    gguf = resolve(settings.model).gguf_path
    if gguf is None:
        logger.error(
            "CHATBOT_MODEL=%s is not a GGUF file: there is nothing to copy", settings.model
        )
        return 2
    return _copy(gguf, ir_folder(settings.resolved_cache_dir(), gguf))


def _copy(gguf: Path, folder: Path) -> int:
    try:
        if not cached(folder):
            convert(gguf, folder)
    except Exception as exc:
        logger.exception("the OpenVINO IR copy of %s failed", gguf)
        with contextlib.suppress(OSError):
            _failed_path(folder).write_text(f"{type(exc).__name__}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sys.exit(main())
