"""The pages around sign-in, driven by AppTest: nothing of the chat before a user is known."""

from __future__ import annotations

from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from chatbot.config import AuthMode, AuthSettings
from chatbot.domain.users import User, oidc_user_id
from chatbot.service.portal import PortalChatService
from chatbot.ui.signin import SIGN_IN_KEY, SIGN_OUT_KEY
from tests.ui.conftest import RUN_TIMEOUT_S

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


def chat_script(service: object, auth: object, host: str) -> None:
    from chatbot.ui.app import render_for_user

    render_for_user(service, auth, host)  # type: ignore[arg-type]


def _claims(subject: str, name: str) -> dict[str, Any]:
    return {"is_logged_in": True, "iss": ISSUER, "sub": subject, "name": name}


ISSUER = "http://127.0.0.1:9"


@pytest.mark.slow
def test_signed_in_user_sees_their_name_only_their_chats_and_signs_out(
    monolith_service: PortalChatService,
) -> None:
    alice = User(oidc_user_id(ISSUER, "alice"), "Alice")
    bob = User(oidc_user_id(ISSUER, "bob"), "Bob")
    theirs = monolith_service.for_user(bob).create_conversation(title="Bob's secret plans")
    at = AppTest.from_function(
        chat_script,
        args=(monolith_service, AuthSettings(auth=AuthMode.OIDC), "127.0.0.1"),
        default_timeout=RUN_TIMEOUT_S,
    )
    at.secrets = SECRETS
    at.user = _claims("alice", "Alice")
    at.query_params["c"] = theirs.id or ""  # a link to Bob's conversation: not Alice's
    at.run()
    assert not at.exception
    assert any("Signed in as **Alice**" in c.value for c in at.sidebar.caption)
    assert "That conversation no longer exists." in " ".join(w.value for w in at.warning)
    labels = [b.label for b in at.sidebar.button]
    assert "Sign out" in labels and "Bob's secret plans" not in labels
    mine = monolith_service.for_user(alice).list_conversations()
    assert len(mine) == 1 and at.query_params["c"] in (mine[0].id, [mine[0].id])
    assert [c.id for c in monolith_service.for_user(bob).list_conversations()] == [theirs.id]

    remembered = [f"chatbot.title.{mine[0].id}", "chatbot.user", "chatbot.shown_conversation"]
    assert all(key in at.session_state for key in remembered)

    at.sidebar.button(key=SIGN_OUT_KEY).click().run()
    assert not at.exception
    assert "c" not in at.query_params  # the conversation id does not outlive the user
    assert not any(key in at.session_state for key in remembered)
    assert [b.label for b in at.button] == ["Sign in"]


@pytest.mark.slow
def test_no_sign_in_on_a_public_address_shows_who_shares(
    monolith_service: PortalChatService,
) -> None:
    for host, shared in (("0.0.0.0", True), ("127.0.0.1", False)):
        at = AppTest.from_function(
            chat_script, args=(monolith_service, AuthSettings(), host), default_timeout=60
        ).run()
        assert not at.exception
        warned = [w.value for w in at.warning if "shares these conversations" in w.value]
        assert bool(warned) is shared
        assert not any("Signed in" in c.value for c in at.sidebar.caption)
