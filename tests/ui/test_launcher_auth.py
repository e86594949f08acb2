"""``chatbot ui`` with users: checks at start, the shared-UI warning, the secrets file flag."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from chatbot.config import AuthMode, AuthSettings, UISettings
from chatbot.errors import ConfigurationError
from chatbot.ui.launcher import auth_environment, streamlit_flags
from chatbot.ui.wiring import backend_key


def test_none_on_a_public_address_warns_and_on_loopback_does_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert auth_environment(UISettings(ui_host="127.0.0.1"), AuthSettings()) == {}
        assert not caplog.records
        auth_environment(UISettings(ui_host="0.0.0.0"), AuthSettings())
    assert "shares the same conversations" in caplog.text and "0.0.0.0" in caplog.text


def test_header_mode_pins_the_peer_and_checks_the_proxy_list() -> None:
    auth = AuthSettings(auth=AuthMode.HEADER, trusted_proxies=("10.0.0.0/8",))
    # uvicorn must not replace the peer from X-Forwarded-For: it trusts nobody for that.
    assert auth_environment(UISettings(), auth) == {"FORWARDED_ALLOW_IPS": ""}
    with pytest.raises(ConfigurationError, match="not an IP address"):
        auth_environment(UISettings(), AuthSettings(auth=AuthMode.HEADER, trusted_proxies=("x",)))
    # as the backend: header mode without a proxy to trust is a mistake, not a silent lock-out
    with pytest.raises(ConfigurationError, match="needs CHATBOT_TRUSTED_PROXIES"):
        auth_environment(UISettings(), AuthSettings(auth=AuthMode.HEADER))


def test_secrets_file_becomes_streamlits_flag(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    assert f"--secrets.files={secrets}" in streamlit_flags(UISettings(ui_secrets_file=secrets))
    assert not any(f.startswith("--secrets.") for f in streamlit_flags(UISettings()))


def test_ui_over_http_with_users_needs_the_service_key() -> None:
    ui = UISettings(backend_url="http://127.0.0.1:9", backend_api_key=SecretStr("plain"))
    assert backend_key(ui, AuthSettings()) == "plain"
    with pytest.raises(ConfigurationError, match="CHATBOT_SERVICE_KEY"):
        backend_key(ui, AuthSettings(auth=AuthMode.OIDC))
    keyed = AuthSettings(auth=AuthMode.HEADER, service_key=SecretStr("svc"))
    assert backend_key(ui, keyed) == "svc"
