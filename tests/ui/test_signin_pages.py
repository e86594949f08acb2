"""The pages around sign-in, driven by AppTest: nothing of the chat before a user is known."""

from __future__ import annotations

from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from chatbot.config import AuthMode, AuthSettings
from chatbot.ui.signin import SIGN_IN_KEY

SECRETS = {
    "auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "a-long-random-cookie-secret",
        "client_id": "chatbot",
        "client_secret": "secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
    }
}


def page_script(auth: object) -> None:
    """The page for a service that must not be touched before sign-in."""
    from chatbot.ui.app import render_for_user

    render_for_user(object(), auth, "127.0.0.1")  # type: ignore[arg-type]


def _page(auth: AuthSettings, *, secrets: dict[str, Any] | None = None) -> AppTest:
    at = AppTest.from_function(page_script, args=(auth,), default_timeout=30)
    at.secrets = secrets if secrets is not None else SECRETS
    at.user = {"is_logged_in": False}
    return at


def _texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.error, *at.info, *at.markdown, *at.warning)]
    return " ".join(str(p) for p in parts)


def test_signed_out_sees_only_a_sign_in_button() -> None:
    at = _page(AuthSettings(auth=AuthMode.OIDC)).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert "Sign in to see your conversations" in _texts(at)
    assert not at.chat_input and not at.sidebar.button  # nothing of the app


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("provider_unreachable", "server_metadata_url"),
        ("exchange_failed", "client_secret"),
        ("access_denied", "access_denied"),
        ("temporarily_unavailable", "temporarily_unavailable"),
    ],
)
def test_failed_sign_in_says_what_to_fix(reason: str, words: str) -> None:
    at = _page(AuthSettings(auth=AuthMode.OIDC))
    at.query_params["signin_error"] = reason
    at.run()
    assert not at.exception
    assert words in _texts(at)
    assert [b.label for b in at.button] == ["Sign in again"]
    assert at.button(key=SIGN_IN_KEY)


def test_missing_secrets_name_the_keys() -> None:
    at = _page(AuthSettings(auth=AuthMode.OIDC), secrets={"auth": {"redirect_uri": "x"}}).run()
    assert not at.exception
    text = _texts(at)
    assert "Sign-in is not configured" in text
    assert "cookie_secret, client_id, client_secret, server_metadata_url" in text
    assert not at.button  # nothing to click until the file is fixed


def test_header_mode_without_a_trusted_proxy_explains_the_rule() -> None:
    at = _page(AuthSettings(auth=AuthMode.HEADER, auth_header="X-Auth-User")).run()
    assert not at.exception
    assert "X-Auth-User" in _texts(at) and "CHATBOT_TRUSTED_PROXIES" in _texts(at)
    assert not at.chat_input
