"""Users in a real Chromium: Streamlit's sign-in through a real OpenID Connect provider.

- oidc, both deployments: two users in two browser contexts sign in on the provider's
  authorize page, each writes a conversation and sees only their own, also after a reload;
  a link to the other's conversation is "no longer exists"; sign-out shows the sign-in page;
- a refused sign-in and an unreachable provider give a page that says what to fix;
- header mode: the proxy's header names the user from a trusted address, and is ignored from
  any other;
- none on a non-loopback address: a banner that every visitor shares the conversations.

Screenshots of the two users side by side go to ``artifacts/issue13/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from chatbot.domain.users import User, oidc_user_id
from chatbot.service.http import HttpChatService
from tests.browser.conftest import UIProcess
from tests.fixtures.oidc import OIDCProvider
from tests.fixtures.servers import ROOT, SCRIPTED, BackendProcess, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 240_000
SHOTS = ROOT / "artifacts" / "issue13"
STATS = re.compile(r"\d+ tokens · [\d.]+ tokens/s")
SERVICE_KEY = "ui-service-key-for-tests"
USERS = {
    "alice": ("Alice Example", "Alice asks about apples"),
    "bob": ("Bob Example", "Bob asks about bicycles"),
}


# Who sees what is the subject, not what a model writes: the scripted engine, no model to load.


def _secrets(tmp_path: Path, metadata_url: str) -> Path:
    """The ``[auth]`` section a user writes; ``{port}`` is filled in by Streamlit."""
    path = tmp_path / "secrets.toml"
    path.write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "a-long-random-cookie-secret-for-tests"\n'
        'client_id = "chatbot-ui"\n'
        'client_secret = "chatbot-ui-secret"\n'
        f'server_metadata_url = "{metadata_url}"\n',
        encoding="utf-8",
    )
    return path


def _oidc_env(provider: OIDCProvider, tmp_path: Path) -> dict[str, str]:
    metadata = f"{provider.issuer}/.well-known/openid-configuration"
    return {
        "CHATBOT_AUTH": "oidc",
        "CHATBOT_UI_SECRETS_FILE": str(_secrets(tmp_path, metadata)),
        "CHATBOT_OIDC_ISSUER": provider.issuer,
        "CHATBOT_OIDC_AUDIENCE": "chatbot-ui",
    }


def _page(browser: Any, url: str, **context: Any) -> Any:
    page = browser.new_context(viewport={"width": 1000, "height": 720}, **context).new_page()
    page.goto(url)
    return page


def _click_sign_in(page: Any, name: str = "Sign in") -> None:
    page.get_by_role("button", name=name, exact=True).click(timeout=TIMEOUT_MS)
    page.wait_for_url(re.compile(r"/oauth2/authorize"), timeout=TIMEOUT_MS)


def _sign_in(page: Any, subject: str) -> None:
    """Through the provider's own authorize form, back to the app signed in."""
    _click_sign_in(page)
    page.get_by_placeholder("sub").fill(subject)
    page.get_by_role("button", name="Authorize", exact=True).click()
    name = USERS[subject][0]
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible(timeout=TIMEOUT_MS)


def _send(page: Any, text: str) -> str:
    """Send a message, wait for its stored reply; the conversation id from the URL."""
    box = page.get_by_test_id("stChatInputTextArea")
    expect(box).to_be_enabled(timeout=TIMEOUT_MS)
    box.fill(text)
    box.press("Enter")
    expect(page.get_by_text(STATS)).to_have_count(1, timeout=TIMEOUT_MS)
    match = re.search(r"[?&]c=([0-9a-f]+)", page.url)
    assert match, page.url
    return match.group(1)


def _sidebar(page: Any) -> Any:
    return page.get_by_test_id("stSidebar")


def _sees_only_own(page: Any, own: str, other: str) -> None:
    sidebar = _sidebar(page)
    expect(sidebar.get_by_role("button", name=own)).to_be_visible(timeout=TIMEOUT_MS)
    expect(sidebar.get_by_role("button", name=other)).to_have_count(0, timeout=TIMEOUT_MS)
    expect(page.get_by_test_id("stChatMessage").first).to_contain_text(own, timeout=TIMEOUT_MS)


def _side_by_side(browser: Any, left: Path, right: Path, target: Path) -> None:
    """One image of both users: the two screenshots on one page, drawn by Chromium."""
    html = target.with_suffix(".html")
    html.write_text(
        "<html><body style='margin:0;display:flex;gap:8px;background:#888'>"
        f"<img src='{left.name}' width='1000'><img src='{right.name}' width='1000'>"
        "</body></html>",
        encoding="utf-8",
    )
    page = browser.new_context(viewport={"width": 2008, "height": 720}).new_page()
    page.goto(html.as_uri())
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth)")
    page.screenshot(path=str(target))
    page.context.close()
    html.unlink()


def _two_users(browser: Any, ui: UIProcess, provider: OIDCProvider, deployment: str) -> None:
    """Alice and Bob in two contexts: each sees only their own, also after a reload."""
    for subject, (name, _) in USERS.items():
        provider.set_user(subject, name=name, email=f"{subject}@example.com")
    SHOTS.mkdir(parents=True, exist_ok=True)
    alice = _page(browser, ui.url)
    expect(alice.get_by_role("button", name="Sign in", exact=True)).to_be_visible(
        timeout=TIMEOUT_MS
    )
    alice.screenshot(path=str(SHOTS / f"{deployment}-sign-in.png"))
    # A refused sign-in says so, and offers to try again.
    _click_sign_in(alice)
    alice.get_by_role("button", name="Deny").click()
    expect(alice.get_by_text("The sign-in was refused.")).to_be_visible(timeout=TIMEOUT_MS)
    expect(alice.get_by_test_id("stChatInputTextArea")).to_have_count(0)
    alice.screenshot(path=str(SHOTS / f"{deployment}-sign-in-refused.png"))
    alice.goto(ui.url)
    _sign_in(alice, "alice")
    bob = _page(browser, ui.url)
    _sign_in(bob, "bob")
    ids = {}
    for subject, page in (("alice", alice), ("bob", bob)):
        ids[subject] = _send(page, USERS[subject][1])
    for page, own, other in ((alice, "alice", "bob"), (bob, "bob", "alice")):
        _sees_only_own(page, USERS[own][1], USERS[other][1])
        page.reload()
        expect(page.get_by_text(f"Signed in as {USERS[own][0]}")).to_be_visible(timeout=TIMEOUT_MS)
        _sees_only_own(page, USERS[own][1], USERS[other][1])
    shots = [SHOTS / f"{deployment}-{subject}.png" for subject in ("alice", "bob")]
    alice.screenshot(path=str(shots[0]))
    bob.screenshot(path=str(shots[1]))
    _side_by_side(browser, *shots, SHOTS / f"{deployment}-alice-and-bob-side-by-side.png")

    # Bob's link opened by Alice: the same answer as a conversation that does not exist.
    alice.goto(f"{ui.url}/?c={ids['bob']}")
    expect(alice.get_by_text("That conversation no longer exists.")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    expect(alice.get_by_text(USERS["bob"][1])).to_have_count(0)

    # Sign-out: through the provider's end-session page, back to the sign-in page.
    _sidebar(bob).get_by_role("button", name="Sign out").click(timeout=TIMEOUT_MS)
    end = bob.get_by_role("button", name="End session")
    end.click(timeout=TIMEOUT_MS)
    expect(bob.get_by_role("button", name="Sign in", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    expect(bob.get_by_text(USERS["bob"][1])).to_have_count(0)
    assert "c=" not in bob.url
    for page in (alice, bob):
        page.context.close()


@pytest.mark.timeout(900)
def test_oidc_monolith_two_users_in_chromium(
    browser: Any,
    oidc_provider: OIDCProvider,
    start_ui: Callable[..., UIProcess],
    tmp_path: Path,
) -> None:
    ui = start_ui(CHATBOT_MAX_TOKENS_CAP="6", **SCRIPTED, **_oidc_env(oidc_provider, tmp_path))
    _two_users(browser, ui, oidc_provider, "monolith")


@pytest.mark.timeout(900)
def test_oidc_microservices_two_users_in_chromium(
    browser: Any,
    oidc_provider: OIDCProvider,
    start_backend: Callable[..., BackendProcess],
    start_ui: Callable[..., UIProcess],
    tmp_path: Path,
) -> None:
    env = _oidc_env(oidc_provider, tmp_path)
    backend = start_backend(
        CHATBOT_AUTH="oidc",
        CHATBOT_OIDC_ISSUER=env["CHATBOT_OIDC_ISSUER"],
        CHATBOT_OIDC_AUDIENCE=env["CHATBOT_OIDC_AUDIENCE"],
        CHATBOT_SERVICE_KEY=SERVICE_KEY,
        CHATBOT_MAX_TOKENS_CAP="6",
        **SCRIPTED,
    )
    ui = start_ui("--backend", backend.url, CHATBOT_SERVICE_KEY=SERVICE_KEY, **env)
    _two_users(browser, ui, oidc_provider, "microservices")
    # The backend keeps each conversation with its owner: the user id is issuer + subject.
    service = HttpChatService(backend.url, SERVICE_KEY)
    try:
        for subject, (name, message) in USERS.items():
            user = User(oidc_user_id(oidc_provider.issuer, subject), name)
            titles = [c.title for c in service.for_user(user).list_conversations()]
            assert titles == [message], titles
    finally:
        service.close()


def test_unreachable_provider_says_what_to_fix(
    browser: Any, start_ui: Callable[..., UIProcess], tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration"
    # No model needed for a page that nobody can pass: a backend that is not there.
    ui = start_ui(
        "--backend",
        f"http://127.0.0.1:{free_port()}",
        CHATBOT_AUTH="oidc",
        CHATBOT_SERVICE_KEY=SERVICE_KEY,
        CHATBOT_UI_SECRETS_FILE=str(_secrets(tmp_path, dead)),
    )
    page = _page(browser, ui.url)
    page.get_by_role("button", name="Sign in").click(timeout=TIMEOUT_MS)
    expect(page.get_by_text("The sign-in provider could not be reached.")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    expect(page.get_by_text("server_metadata_url")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("Traceback")).to_have_count(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "sign-in-provider-unreachable.png"))
    page.context.close()


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "untrusted-peer"])
def test_header_mode_honours_only_a_trusted_proxy(
    browser: Any, start_ui: Callable[..., UIProcess], trusted: bool
) -> None:
    # The browser reaches the UI from 127.0.0.1: a proxy there, or a visitor around it.
    ui = start_ui(
        "--backend",
        f"http://127.0.0.1:{free_port()}",
        CHATBOT_AUTH="header",
        CHATBOT_AUTH_HEADER="X-Forwarded-Email",
        CHATBOT_TRUSTED_PROXIES="127.0.0.1" if trusted else "10.255.255.1, 192.0.2.0/24",
        CHATBOT_SERVICE_KEY=SERVICE_KEY,
    )
    page = _page(browser, ui.url, extra_http_headers={"X-Forwarded-Email": "carol@example.com"})
    if trusted:
        sidebar = _sidebar(page)
        expect(sidebar.get_by_text("Signed in as carol@example.com")).to_be_visible(
            timeout=TIMEOUT_MS
        )
        expect(sidebar.get_by_role("button", name="Sign out")).to_have_count(0)  # the proxy's
    else:
        expect(page.get_by_text("Sign-in required.")).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.get_by_text("CHATBOT_TRUSTED_PROXIES")).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.get_by_text("carol@example.com")).to_have_count(0)
        assert "ignored the user header from 127.0.0.1" in ui.log()
    page.context.close()


def test_no_sign_in_on_a_public_address_warns_every_visitor(
    browser: Any, backend_server: BackendProcess, start_ui: Callable[..., UIProcess]
) -> None:
    ui = start_ui("--host", "0.0.0.0", "--backend", backend_server.url)
    page = _page(browser, ui.url)  # 0.0.0.0 is reached on 127.0.0.1
    expect(
        page.get_by_text("Anyone who can open this page shares these conversations")
    ).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_test_id("stChatInputTextArea")).to_be_enabled(timeout=TIMEOUT_MS)
    assert "WARNING" in ui.log() and "shares the same conversations" in ui.log()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "none-on-a-public-address.png"))
    page.context.close()
