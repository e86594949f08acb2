"""``chatbot ui``: start ``streamlit run`` on the app with the settings in its environment.

Settings travel as ``CHATBOT_*`` variables, the same ones a user would set, so the Streamlit
process reads them with the same settings models and nothing is parsed twice.

In the monolith the model starts loading when the UI starts, not when the first page opens:
Streamlit runs the app once, without a browser, for its script health check, and that run
builds the shared service (whose model loads in the background). A detached helper process
asks for that check as soon as the server answers.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import tomllib
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from chatbot.config import AuthMode, AuthSettings, EngineSettings, StoreSettings, UISettings, load
from chatbot.errors import ConfigurationError

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
    secrets = [f"--secrets.files={ui.ui_secrets_file}"] if ui.ui_secrets_file else []
    return [
        *flags,
        *secrets,
        f"--server.address={ui.ui_host}",
        f"--server.port={ui.ui_port}",
        "--server.scriptHealthCheckEnabled=true",
    ]


def auth_environment(ui: UISettings, auth: AuthSettings) -> dict[str, str]:
    """Check the user settings at start, warn where the UI is shared, and pin the peer.

    In header mode the trusted-proxy check needs the real TCP peer, so uvicorn must not
    replace it from ``X-Forwarded-For``: ``FORWARDED_ALLOW_IPS`` then trusts nobody.
    """
    from chatbot.addresses import TrustedProxies, is_loopback

    match auth.auth:
        case AuthMode.NONE:
            if not is_loopback(ui.ui_host):
                logger.warning(
                    "The UI listens on %s without sign-in (CHATBOT_AUTH=none): everyone who "
                    "reaches it shares the same conversations. Set CHATBOT_AUTH=oidc or header "
                    "to give each person their own.",
                    ui.ui_host,
                )
        case AuthMode.HEADER:
            if not TrustedProxies(auth.trusted_proxies):  # a malformed entry raises here
                raise ConfigurationError(
                    "CHATBOT_AUTH=header needs CHATBOT_TRUSTED_PROXIES (the addresses or "
                    "networks of the authenticating proxy): the header is honoured only from them"
                )
            return {"FORWARDED_ALLOW_IPS": ""}
        case AuthMode.OIDC:
            if ui.ui_secrets_file is not None and not ui.ui_secrets_file.is_file():
                logger.warning(
                    "CHATBOT_UI_SECRETS_FILE=%s does not exist: sign-in needs its [auth] section.",
                    ui.ui_secrets_file,
                )
    return {}


def _flag_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def open_message(ui: UISettings) -> str:
    """Where to point a browser; a wildcard address is reached as localhost."""
    host = "localhost" if ui.ui_host in ("0.0.0.0", "::", "") else ui.ui_host
    host = f"[{host}]" if ":" in host else host
    return f"Open http://{host}:{ui.ui_port} in a browser (Ctrl+C stops the UI)."


def launch_ui(ui: UISettings, engine: EngineSettings, store: StoreSettings) -> int:
    """Run the UI until it exits; the Streamlit process replaces this one where it can."""
    auth = load(AuthSettings)
    env = {**os.environ, **settings_environment(ui, engine, store), **auth_environment(ui, auth)}
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
        if not ui.backend_url:
            _preload_when_up(_local_url(ui))
        os.execve(sys.executable, command, env)  # signals reach Streamlit directly
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0


def _local_url(ui: UISettings) -> str:
    host = "127.0.0.1" if ui.ui_host in ("0.0.0.0", "::", "") else ui.ui_host
    return f"http://{host}:{ui.ui_port}"


PRELOAD_WAIT_S = 120.0


def _preload_when_up(url: str) -> None:
    """Fork a helper (detached: a double fork, so nobody has to reap it) that runs the app
    once through Streamlit's script health check as soon as the server answers."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return
    try:
        if os.fork() == 0:
            _preload(url)
    finally:
        os._exit(0)


def _preload(url: str) -> None:
    import httpx

    deadline = time.monotonic() + PRELOAD_WAIT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                httpx.get(f"{url}/_stcore/script-health-check", timeout=PRELOAD_WAIT_S)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
