"""CLI flags generated from the settings models, so each option is declared once."""

from __future__ import annotations

import argparse
from typing import Any, TypeVar

from pydantic_settings import BaseSettings

from chatbot.config import load

S = TypeVar("S", bound=BaseSettings)


def add_flags(parser: argparse.ArgumentParser, model: type[BaseSettings]) -> None:
    """Add a flag for each field that declares one; the default stays the environment's."""
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        flag = extra.get("cli") if isinstance(extra, dict) else None
        if not isinstance(flag, str):
            continue
        dest = f"{model.__name__}.{name}"
        if any(action.dest == dest for action in parser._actions):
            continue
        parser.add_argument(
            flag,
            dest=dest,
            default=None,
            metavar=name.upper(),
            help=f"{info.description} [env CHATBOT_{name.upper()}]",
        )


def settings_from(args: argparse.Namespace, model: type[S]) -> S:
    """The settings model with the flags the user gave overriding the environment."""
    prefix = f"{model.__name__}."
    given: dict[str, Any] = {
        key[len(prefix) :]: value
        for key, value in vars(args).items()
        if key.startswith(prefix) and value is not None
    }
    return load(model, **given)
