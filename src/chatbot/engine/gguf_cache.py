"""A converted copy of a GGUF model, so the 15 s dequantisation happens once per file.

transformers de-quantises GGUF weights on every load; the result is an ordinary float model.
Saving it once as safetensors makes later loads take well under a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_COMPLETE_MARKER = ".complete"


def cache_folder(cache_root: Path, gguf_path: Path, kind: str = "converted") -> Path:
    """A folder name that changes whenever the GGUF file does; ``kind`` names the format."""
    stat = gguf_path.stat()
    key = f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root / kind / f"{gguf_path.stem}-{digest}"


def cached(folder: Path) -> bool:
    return (folder / _COMPLETE_MARKER).is_file()


@contextlib.contextmanager
def writing(folder: Path) -> Iterator[Path]:
    """A scratch folder beside ``folder`` to write a copy into; it becomes ``folder``, marked
    complete, only if the block ends without an error, so a half-written copy is never taken
    for one. If another process finished the same copy first, its copy stays."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=folder.parent))
    try:
        yield scratch
        (scratch / _COMPLETE_MARKER).write_text("ok\n")
        try:
            os.replace(scratch, folder)
        except OSError:
            if not cached(folder):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def store(folder: Path, model: Any, tokenizer: Any) -> None:
    """Write atomically: a half-written folder is never taken for a converted model."""
    try:
        with writing(folder) as scratch:
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(scratch)
            tokenizer.save_pretrained(scratch)
        logger.info("saved a converted copy of the model in %s", folder)
    except OSError as exc:  # a read-only cache or a full disk only costs speed
        logger.warning("could not cache the converted model in %s: %s", folder, exc)
