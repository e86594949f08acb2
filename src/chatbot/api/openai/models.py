"""The model names the OpenAI routes answer to: the served model's own, and configured aliases.

A name we do not serve is a 404 ``model_not_found``, as OpenAI answers, so a client that asks
for a model it expects learns at once that it is talking to something else. Aliases
(``CHATBOT_MODEL_ALIASES``) let clients with a hard-coded name keep working, on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatbot.api.openai.protocol import ModelCard, ModelList
from chatbot.config import EngineKind, EngineSettings
from chatbot.engine import model_source
from chatbot.errors import ChatbotError, ModelNotFoundError


@dataclass(frozen=True, slots=True)
class ServedModels:
    """The served model's name, its aliases, and the ``created`` time every card shows."""

    name: str
    aliases: tuple[str, ...]
    created: int

    @property
    def names(self) -> tuple[str, ...]:
        """The served name first: clients that take the first card get the real model."""
        return (self.name, *(alias for alias in self.aliases if alias != self.name))

    def cards(self) -> ModelList:
        return ModelList(data=[ModelCard(id=name, created=self.created) for name in self.names])

    def card(self, model_id: str) -> ModelCard:
        if model_id not in self.names:
            raise _not_found(model_id)
        return ModelCard(id=model_id, created=self.created)

    def resolve(self, requested: str | None) -> str:
        """The served model's name for a request's ``model``; an omitted model means it."""
        if requested is None or requested in self.names:
            return self.name
        raise _not_found(requested)


def _not_found(model_id: str) -> ModelNotFoundError:
    shown = model_id if len(model_id) <= 200 else model_id[:200] + "…"
    return ModelNotFoundError(
        f"The model `{shown}` does not exist or you do not have access to it; "
        "see GET /v1/models (CHATBOT_MODEL_ALIASES adds names)",
        param="model",
    )


def model_created(settings: EngineSettings, fallback: int) -> int:
    """When the served model was made: its file's or folder's mtime, stable across restarts.

    A hub id or an upstream model has no local file: then ``fallback`` (the app's start).
    """
    if settings.engine is EngineKind.OPENAI:
        return fallback
    try:
        source = model_source.resolve(settings.model)
    except ChatbotError:
        return fallback
    path = source.gguf_path or Path(source.location)
    try:
        return int(path.stat().st_mtime)
    except OSError:
        return fallback
