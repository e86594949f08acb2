"""An OpenVINO IR copy of a GGUF model, so later starts skip rebuilding the graph.

OpenVINO reads a GGUF by rebuilding the model graph from its tensors at every load: 5.2-6.2 s
for the embedded model on the 2-core development machine, where the IR of the same graph
(weights still 4-bit, 92 MB) loads in 2.7-3.6 s. A ``CACHE_DIR`` of compiled blobs does not help:
the continuous-batching pipeline writes one but rejects it at the next start (measured with
strace). The IR needs its tokenizer beside it (building one from the GGUF takes another 2.3 s),
so the copy also holds one, converted by ``openvino_tokenizers`` from transformers' tokenizer for
the GGUF.

Making the copy costs about 20 s of CPU (transformers reads the GGUF's vocabulary in Python), so
no start waits for it: a start that loads the GGUF launches :func:`main` in a process of its own,
at the lowest priority, and the next start finds the copy. The graph and the tokenizer are the
same, so replies are the same token for token (``tests/engine/test_openvino_ir.py``). A copy
that cannot be loaded only costs speed: the engine falls back to the GGUF.
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

from chatbot.engine import gguf_cache

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
    """Write the IR copy (graph, tokenizer, detokenizer) atomically: all of it or nothing."""
    import openvino
    import openvino_genai
    from openvino_tokenizers import convert_tokenizer
    from transformers import AutoTokenizer

    with gguf_cache.writing(folder) as scratch:
        link = scratch / _LINK
        try:
            link.symlink_to(gguf_path.resolve())
        except OSError:  # no symlinks here (some Windows setups): a copy does as well
            shutil.copyfile(gguf_path, link)
        # OpenVINO writes the graph it built next to the GGUF it read: the scratch folder.
        pipeline = openvino_genai.LLMPipeline(str(link), "CPU", enable_save_ov_model=True)
        if not (scratch / MODEL_XML).is_file():
            raise RuntimeError(f"OpenVINO did not write {MODEL_XML} for {gguf_path}")
        hf_tokenizer = AutoTokenizer.from_pretrained(scratch, gguf_file=_LINK)
        tokenizer, detokenizer = convert_tokenizer(hf_tokenizer, with_detokenizer=True)
        openvino.save_model(tokenizer, str(scratch / "openvino_tokenizer.xml"))
        openvino.save_model(detokenizer, str(scratch / "openvino_detokenizer.xml"))
        link.unlink()
        check_same_tokens(pipeline.get_tokenizer(), openvino_genai.Tokenizer(str(scratch)))
    logger.info("saved an OpenVINO IR copy of %s in %s", gguf_path, folder)


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


def start_conversion(gguf_path: Path, folder: Path) -> bool:
    """Launch :func:`main` in a background process unless one is at it; True if launched.

    A lock file beside the folder keeps several servers starting at once (replicas, a test
    suite) to one conversion; the process removes it when done.
    """
    lock = _lock_path(folder)
    if _failed_path(folder).exists():  # this file cannot be converted: do not retry each start
        return False
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        if not _take_lock(lock):
            return False
        subprocess.Popen(
            [sys.executable, "-m", __name__, str(gguf_path), str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the server does not cut it off half-way
            close_fds=True,
        )
    except OSError as exc:  # a read-only cache or no room: loads stay on the GGUF
        logger.warning("cannot make an OpenVINO IR copy in %s: %s", folder, exc)
        with contextlib.suppress(OSError):
            lock.unlink()
        return False
    logger.info("making an OpenVINO IR copy of %s in the background (faster next start)", gguf_path)
    return True


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
    an image build runs this, so its containers start from the copy. With them, it is a server's
    background job, and releases the lock the server took for it.
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
    with contextlib.suppress(OSError):
        os.nice(19)  # serving comes first
    sys.exit(main())
