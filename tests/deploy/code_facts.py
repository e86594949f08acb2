"""What the deployment files must agree with, read from the code itself.

Commands and flags come from the real argument parser, environment names from the settings
models, ports from their defaults, probe paths from the FastAPI app's routes; so renaming any
of them in the code fails the deployment tests instead of a deployment.
"""

from __future__ import annotations

import inspect
import shlex
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from chatbot import config
from chatbot.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ENV_PREFIX = "CHATBOT_"
STREAMLIT_HEALTH = "/_stcore/health"


def settings_models() -> list[type[BaseSettings]]:
    return [
        obj
        for obj in vars(config).values()
        if inspect.isclass(obj) and issubclass(obj, BaseSettings) and obj is not BaseSettings
    ]


@cache
def env_fields() -> dict[str, tuple[type[BaseSettings], str]]:
    """CHATBOT_* name -> (settings model, field)."""
    return {
        f"{ENV_PREFIX}{name.upper()}": (model, name)
        for model in settings_models()
        for name in model.model_fields
    }


def check_env(env: Mapping[str, Any], where: str) -> None:
    """Every CHATBOT_* name exists, and every value validates against its settings model."""
    fields = env_fields()
    by_model: dict[type[BaseSettings], dict[str, Any]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        assert name in fields, f"{where}: {name} is not a setting of chatbot.config"
        model, field = fields[name]
        by_model.setdefault(model, {})[field] = value
    for model, values in by_model.items():
        try:
            model(**values)
        except Exception as exc:  # pydantic's ValidationError says which value is wrong
            pytest.fail(f"{where}: invalid value for {model.__name__}: {exc}")


def check_command(argv: Sequence[str], where: str) -> Any:
    """Parse ``chatbot <argv>`` with the real CLI parser; an unknown command or flag fails."""
    try:
        return build_parser().parse_args(list(argv))
    except SystemExit:
        pytest.fail(f"{where}: `chatbot {shlex.join(argv)}` is not accepted by chatbot.cli")


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    items = list(argv)
    return items[items.index(flag) + 1] if flag in items else None


def default_backend_port() -> int:
    return int(config.ServerSettings.model_fields["port"].default)


def default_ui_port() -> int:
    return int(config.UISettings.model_fields["ui_port"].default)


def default_shutdown_grace_s() -> float:
    return float(config.ServerSettings.model_fields["shutdown_grace_s"].default)


def default_request_timeout_s() -> float:
    return float(config.ServerSettings.model_fields["request_timeout_s"].default)


@cache
def app_paths() -> frozenset[str]:
    """Every route path of the backend app, built without starting it (no model loads)."""
    from chatbot.api import create_app

    app = create_app(
        config.ServerSettings(),
        config.EngineSettings(),
        config.StoreSettings(),
        config.LimitSettings(),
    )
    direct = {str(path) for route in app.routes if (path := getattr(route, "path", None))}
    return frozenset(direct | set(app.openapi()["paths"]))


def check_path(path: str, port: int, where: str) -> None:
    """A probe or health path exists on whatever listens on that port."""
    if port == default_ui_port():
        assert path == STREAMLIT_HEALTH, f"{where}: the UI's health path is {STREAMLIT_HEALTH}"
    else:
        assert path in app_paths(), f"{where}: {path} is not a route of the backend"


def repo_paths_exist(paths: Iterable[str], base: Path, where: str) -> None:
    for item in paths:
        assert (base / item).exists(), f"{where}: {item} does not exist under {base}"
