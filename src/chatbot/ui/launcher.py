"""``chatbot ui``: start ``streamlit run`` on the app with the settings in its environment.

Settings travel as ``CHATBOT_*`` variables, the same ones a user would set, so the Streamlit
process reads them with the same settings models and nothing is parsed twice.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tomllib
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from chatbot.config import EngineSettings, StoreSettings, UISettings

logger = logging.getLogger(__name__)

APP_FILE = Path(__file__).with_name("app.py")
# The app wrapped as ASGI, with the Content-Security-Policy header (see chatbot.ui.security).
ENTRY_FILE = Path(__file__).with_name("asgi_app.py")
THEME_FILE = Path(__file__).with_name("theme.toml")


def settings_environment(*models: BaseSettings) -> dict[str, str]:
    """``CHATBOT_<FIELD>`` for every field that has a value."""
    env: dict[str, str] = {}
    for model in models:
        for name in type(model).model_fields:
            value = _env_value(getattr(model, name))
            if value is not None:
                env[f"CHATBOT_{name.upper()}"] = value
    return env


def _env_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | dict):
        import json

        return json.dumps(value)
    return str(value)


def streamlit_flags(ui: UISettings) -> list[str]:
    """The quiet theme and options of ``theme.toml``, then the address and port."""
    with THEME_FILE.open("rb") as handle:
        options = tomllib.load(handle)
    flags = [
        f"--{section}.{key}={_flag_value(value)}"
        for section, values in options.items()
        for key, value in values.items()
    ]
    return [*flags, f"--server.address={ui.ui_host}", f"--server.port={ui.ui_port}"]


def _flag_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def open_message(ui: UISettings) -> str:
    """Where to point a browser; a wildcard address is reached as localhost."""
    host = "localhost" if ui.ui_host in ("0.0.0.0", "::", "") else ui.ui_host
    host = f"[{host}]" if ":" in host else host
    return f"Open http://{host}:{ui.ui_port} in a browser (Ctrl+C stops the UI)."


def launch_ui(ui: UISettings, engine: EngineSettings, store: StoreSettings) -> int:
    """Run the UI until it exits; the Streamlit process replaces this one where it can."""
    env = {**os.environ, **settings_environment(ui, engine, store)}
    if not ui.backend_url:
        env.pop("CHATBOT_BACKEND_URL", None)
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ENTRY_FILE),
        *streamlit_flags(ui),
    ]
    where = f"backend {ui.backend_url}" if ui.backend_url else "the model in process"
    logger.info("%s The UI runs on %s.", open_message(ui), where)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(sys.executable, command, env)  # signals reach Streamlit directly
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0
