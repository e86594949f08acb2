"""Which settings the backend refuses at start, the warning of an open deployment, and the
security schemes the OpenAPI document declares for each mode."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from chatbot.api import create_app
from chatbot.config import (
    AuthMode,
    AuthSettings,
    EngineSettings,
    LimitSettings,
    ServerSettings,
    StoreSettings,
)
from chatbot.errors import ConfigurationError
from tests.fixtures.servers import CHATBOT, ROOT


def _app(auth: AuthSettings, tmp_path: Path, **server: Any) -> Any:
    # Without its lifespan: nothing is loaded, only the settings are checked.
    return create_app(
        ServerSettings(**server),
        EngineSettings(),
        StoreSettings(data_dir=tmp_path),
        LimitSettings(),
        auth=auth,
    )


@pytest.mark.parametrize(
    ("auth", "words"),
    [
        (AuthSettings(auth=AuthMode.OIDC), "CHATBOT_OIDC_ISSUER and CHATBOT_OIDC_AUDIENCE"),
        (
            AuthSettings(auth=AuthMode.OIDC, oidc_issuer="https://id.example"),
            "CHATBOT_OIDC_AUDIENCE",
        ),
        (
            AuthSettings(auth=AuthMode.OIDC, oidc_issuer="id.example", oidc_audience="a"),
            "http(s) URL",
        ),
        (AuthSettings(auth=AuthMode.HEADER), "CHATBOT_TRUSTED_PROXIES"),
        (
            AuthSettings(auth=AuthMode.HEADER, trusted_proxies="10.0.0.0/8, proxy.internal"),
            "'proxy.internal' is not an IP address",
        ),
        (AuthSettings(trusted_proxies="10.0.0.0/33"), "'10.0.0.0/33'"),
    ],
)
def test_incomplete_settings_fail_at_start(auth: AuthSettings, words: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as error:
        _app(auth, tmp_path)
    assert words in error.value.message


def test_the_service_key_must_not_be_the_api_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CHATBOT_SERVICE_KEY must differ"):
        _app(AuthSettings(service_key=SecretStr("same")), tmp_path, api_key="same")


def test_chatbot_serve_refuses_oidc_without_its_settings() -> None:
    done = subprocess.run(
        [str(CHATBOT), "serve", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "CHATBOT_AUTH": "oidc"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "CHATBOT_OIDC_ISSUER" in done.stderr


@pytest.mark.parametrize(
    ("host", "warned"),
    [("0.0.0.0", True), ("10.1.2.3", True), ("127.0.0.1", False), ("::1", False)],
)
def test_none_on_a_non_loopback_address_warns_that_everyone_shares(
    host: str, warned: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    _app(AuthSettings(), tmp_path, host=host)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    shared = [w for w in warnings if "every client shares" in w and "CHATBOT_AUTH" in w]
    assert bool(shared) is warned, warnings
    caplog.clear()
    _app(AuthSettings(auth=AuthMode.HEADER, trusted_proxies="10.0.0.1"), tmp_path, host=host)
    assert not any("every client shares" in r.getMessage() for r in caplog.records)


def _schemes(auth: AuthSettings, tmp_path: Path, **server: Any) -> tuple[dict[str, Any], Any]:
    document = _app(auth, tmp_path, **server).openapi()
    schemes = document["components"].get("securitySchemes", {})
    return schemes, document["paths"]["/v1/models"]["get"].get("security")


def test_the_document_declares_the_ways_in_of_each_mode(tmp_path: Path) -> None:
    schemes, security = _schemes(AuthSettings(), tmp_path)
    assert schemes == {} and security is None  # open: nothing is required
    schemes, security = _schemes(AuthSettings(), tmp_path, api_key="k")
    assert set(schemes) == {"APIKey"} and security == [{"APIKey": []}]
    oidc = AuthSettings(auth=AuthMode.OIDC, oidc_issuer="https://id.example/", oidc_audience="a")
    schemes, security = _schemes(oidc, tmp_path)
    assert schemes["OpenIDConnect"]["openIdConnectUrl"] == (
        "https://id.example/.well-known/openid-configuration"
    )
    assert security == [{"APIKey": []}, {"OpenIDConnect": []}]
    header = AuthSettings(auth=AuthMode.HEADER, trusted_proxies="10.0.0.1", auth_header="X-User")
    schemes, security = _schemes(header, tmp_path)
    assert schemes["ProxyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-User",
        "description": schemes["ProxyHeader"]["description"],
    }
    assert security == [{"APIKey": []}, {"ProxyHeader": []}]
