"""Waiting, busy and down, in a real Chromium: what a user sees while the chat cannot answer yet.

- monolith: the model's loading progress at start, and a reply's place in the queue while
  another reply runs (one generation place, one queue slot);
- microservices: a place in the queue the same way (the backend's loading progress over HTTP
  is drawn by the same code, tested with AppTest in ``tests/ui/test_loading.py``: a real
  backend loads too fast here to catch it in a browser);
- both: a refused send (429) retried by itself with a countdown;
- microservices: the backend stopped and restarted with the transcript and the typed message
  kept, and one Retry.

Screenshots of each state go to ``artifacts/issue14/``. The model is the scripted engine
(``CHATBOT_ENGINE=scripted``): its load ends when the test says so, and a long reply lasts
until the test stops it, so each state is certain and no test waits for a model to write.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from chatbot.domain import GenerationParams
from chatbot.service.http import HttpChatService
from chatbot.store import ConversationStore
from tests.browser.conftest import UIProcess
from tests.fixtures.prompts import LONG_PROMPT, REPLY_WORDS
from tests.fixtures.servers import ROOT, SCRIPTED, BackendProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 240_000
SHOTS = ROOT / "artifacts" / "issue14"
STATS = re.compile(r"\d+ tokens · [\d.]+ tokens/s")
COUNT = LONG_PROMPT
# A reply that outlasts whatever the test does while it runs (5,000 tokens at 0.05 s: over four
# minutes); the test stops it once it has seen what it came for.
LONG_TOKENS = 5000
CAP = {"CHATBOT_MAX_TOKENS_CAP": str(LONG_TOKENS)}


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def _page(browser: Any, url: str) -> Any:
    page = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
    page.goto(url)
    return page


def _send(page: Any, text: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for(timeout=TIMEOUT_MS)
    expect(box).to_be_enabled(timeout=TIMEOUT_MS)
    box.fill(text)
    box.press("Enter")


def _replied(page: Any, count: int) -> None:
    """Until ``count`` stored replies show their stats line."""
    expect(page.get_by_text(STATS)).to_have_count(count, timeout=TIMEOUT_MS)


def _queued_behind(browser: Any, ui: UIProcess, long: str, waiting: Any, shot: str) -> Any:
    """Start a long reply in ``long``, send again in ``waiting``: its bubble shows its place."""
    running = _page(browser, f"{ui.url}/?c={long}")
    _send(running, COUNT)
    running.get_by_test_id("stChatMessage").nth(1).get_by_text(REPLY_WORDS).first.wait_for(
        timeout=TIMEOUT_MS
    )
    _send(waiting, "Hello again")
    queued = waiting.get_by_test_id("stChatMessage").nth(3)
    expect(queued).to_contain_text(
        re.compile(r"Waiting: 1st in the queue, about \d+ s"), timeout=TIMEOUT_MS
    )
    _shot(waiting, shot)
    return running


def _stop(page: Any) -> None:
    """Stop the page's running reply: what the test waited for has been seen."""
    page.get_by_role("button", name="Stop").click(timeout=TIMEOUT_MS)
    expect(page.get_by_text("stopped").first).to_be_visible(timeout=TIMEOUT_MS)


def test_monolith_shows_the_model_loading_then_a_place_in_the_queue(
    browser: Any, start_ui: Callable[..., UIProcess], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'chatbot.sqlite3'}"
    store = ConversationStore.open(url)
    try:
        long = store.create_conversation(title="Long", params=_exactly(LONG_TOKENS))
        short = store.create_conversation(
            title="Short", params=GenerationParams(max_new_tokens=6, temperature=0)
        )
    finally:
        store.close()
    loaded = tmp_path / "loaded"  # the model loads until this file exists
    ui = start_ui(
        CHATBOT_DATA_DIR=str(tmp_path),
        CHATBOT_SCRIPTED_LOAD_GATE=str(loaded),
        CHATBOT_MAX_CONCURRENT_REQUESTS="1",
        CHATBOT_MAX_QUEUED_REQUESTS="1",
        **SCRIPTED,
        **CAP,
    )
    waiting = _page(browser, f"{ui.url}/?c={short.id}")
    waiting.get_by_text(re.compile(r"Loading the model in this process… \d+ s")).wait_for(
        timeout=TIMEOUT_MS
    )
    _shot(waiting, "01-monolith-loading-the-model")
    _send(waiting, "Hi")  # sent while the model loads: the reply says why it waits
    bubble = waiting.get_by_test_id("stChatMessage").nth(1)
    expect(bubble).to_contain_text("Loading the model…", timeout=TIMEOUT_MS)
    _shot(waiting, "02-monolith-reply-waits-for-the-model")
    loaded.touch()
    _replied(waiting, 1)  # loaded, answered: one measured reply for the estimate
    expect(waiting.get_by_text(re.compile("Loading the model"))).to_have_count(
        0, timeout=TIMEOUT_MS
    )

    running = _queued_behind(
        browser, ui, long.id or "", waiting, "03-monolith-queued-1st-about-n-s"
    )
    _stop(running)
    _replied(waiting, 2)  # its turn came: answered
    _replied(running, 1)


def _exactly(max_new_tokens: int) -> GenerationParams:
    """Greedy replies of exactly this length (past the end-of-text token): a long one is long."""
    return GenerationParams(max_new_tokens=max_new_tokens, temperature=0, ignore_eos=True)


def _stored_conversations(folder: Path, *max_new_tokens: int) -> list[str]:
    store = ConversationStore.open(f"sqlite:///{folder / 'chatbot.sqlite3'}")
    try:
        made = [store.create_conversation(params=_exactly(n)) for n in max_new_tokens]
    finally:
        store.close()
    return [c.id or "" for c in made]


def _backend_conversation(backend: BackendProcess, max_new_tokens: int) -> str:
    http = HttpChatService(backend.url)
    try:
        created = http.create_conversation(params=_exactly(max_new_tokens))
    finally:
        http.close()
    assert created.id is not None
    return created.id


BUSY = {  # one generation place, no queue: a second send is refused (429) while one runs
    **SCRIPTED,
    **CAP,
    "CHATBOT_MAX_CONCURRENT_REQUESTS": "1",
    "CHATBOT_MAX_QUEUED_REQUESTS": "0",
}


def _retried_by_itself(browser: Any, ui: UIProcess, long: str, short: str, shot: str) -> None:
    """A send refused for load shows a countdown with Cancel, then goes again by itself."""
    running = _page(browser, f"{ui.url}/?c={long}")
    refused = _page(browser, f"{ui.url}/?c={short}")
    refused.get_by_test_id("stChatInputTextArea").wait_for(timeout=TIMEOUT_MS)
    _send(running, COUNT)
    running.get_by_test_id("stChatMessage").nth(1).get_by_text(REPLY_WORDS).first.wait_for(
        timeout=TIMEOUT_MS
    )
    _send(refused, "Hi there")
    refused.get_by_text(re.compile(r"busy with other messages\. Sending again in \d+ s")).wait_for(
        timeout=TIMEOUT_MS
    )
    expect(refused.get_by_role("button", name="Cancel")).to_be_visible(timeout=TIMEOUT_MS)
    _shot(refused, shot)
    _stop(running)  # the place is free: the refused send goes again by itself
    _replied(refused, 1)  # sent again by itself once the place was free, and answered
    expect(refused.get_by_text(re.compile("Sending again"))).to_have_count(0, timeout=TIMEOUT_MS)
    assert "Hi there" in refused.get_by_test_id("stChatMessage").nth(0).inner_text()
    _replied(running, 1)


def test_microservices_retries_a_busy_server_by_itself(
    browser: Any, start_backend: Callable[..., BackendProcess], start_ui: Callable[..., UIProcess]
) -> None:
    backend = start_backend(**BUSY)
    long = _backend_conversation(backend, LONG_TOKENS)
    short = _backend_conversation(backend, 6)
    ui = start_ui("--backend", backend.url)
    _retried_by_itself(browser, ui, long, short, "04-microservices-busy-countdown")


def test_monolith_retries_a_busy_model_by_itself(
    browser: Any, start_ui: Callable[..., UIProcess], tmp_path: Path
) -> None:
    long, short = _stored_conversations(tmp_path, LONG_TOKENS, 6)
    ui = start_ui(CHATBOT_DATA_DIR=str(tmp_path), **BUSY)
    _retried_by_itself(browser, ui, long, short, "08-monolith-busy-countdown")


def test_microservices_shows_a_place_in_the_queue(
    browser: Any, start_backend: Callable[..., BackendProcess], start_ui: Callable[..., UIProcess]
) -> None:
    backend = start_backend(
        CHATBOT_MAX_CONCURRENT_REQUESTS="1", CHATBOT_MAX_QUEUED_REQUESTS="1", **SCRIPTED, **CAP
    )
    ui = start_ui("--backend", backend.url)
    long = _backend_conversation(backend, LONG_TOKENS)
    short = _backend_conversation(backend, 6)
    waiting = _page(browser, f"{ui.url}/?c={short}")
    _send(waiting, "Hi")
    _replied(waiting, 1)  # one measured reply for the estimate
    running = _queued_behind(browser, ui, long, waiting, "10-microservices-queued-1st-about-n-s")
    _stop(running)
    _replied(waiting, 2)
    _replied(running, 1)


def test_microservices_keeps_the_transcript_while_the_backend_is_down(
    browser: Any, start_backend: Callable[..., BackendProcess], start_ui: Callable[..., UIProcess]
) -> None:
    backend = start_backend(**SCRIPTED)
    conversation = _backend_conversation(backend, 6)
    ui = start_ui("--backend", backend.url)
    page = _page(browser, f"{ui.url}/?c={conversation}")
    _send(page, "Hello before the outage")
    _replied(page, 1)
    reply = page.get_by_test_id("stChatMessage").nth(1).inner_text()

    backend.stop()
    _send(page, "Typed while it is down")
    banner = page.get_by_text(re.compile("The chat backend cannot be reached"))
    banner.wait_for(timeout=TIMEOUT_MS)
    expect(banner).to_have_count(
        1, timeout=TIMEOUT_MS
    )  # one banner, in words; the errno behind "Details"
    technical = page.get_by_text(re.compile("Connection refused"))
    expect(technical).to_be_hidden(timeout=TIMEOUT_MS)
    bubbles = page.get_by_test_id("stChatMessage")
    expect(bubbles).to_have_count(2, timeout=TIMEOUT_MS)  # the transcript stays on screen
    expect(bubbles.nth(0)).to_contain_text("Hello before the outage", timeout=TIMEOUT_MS)
    expect(page.get_by_label("Your message (not sent yet)")).to_have_value(
        "Typed while it is down", timeout=TIMEOUT_MS
    )
    expect(page.get_by_role("button", name=re.compile("Retry"))).to_have_count(
        1, timeout=TIMEOUT_MS
    )
    _shot(page, "05-microservices-backend-down-transcript-kept")
    page.get_by_text("Details").click()
    expect(technical).to_be_visible(timeout=TIMEOUT_MS)
    _shot(page, "06-microservices-backend-down-details")

    again = BackendProcess(SCRIPTED, port=backend.port, data_dir=backend.data_dir)
    try:
        expect(banner).to_have_count(0, timeout=TIMEOUT_MS)  # the page reconnected by itself
        expect(page.get_by_test_id("stChatMessage").nth(1)).to_contain_text(
            reply.strip()[:10], timeout=TIMEOUT_MS
        )
        _shot(page, "07-microservices-backend-back")
        # One Retry, the draft's: while the redrawn page's run is still going, Streamlit keeps
        # the last run's elements (the Retry under the banner) until the run ends.
        retry = page.get_by_role("button", name="Retry")
        expect(retry).to_have_count(1, timeout=TIMEOUT_MS)
        retry.click()
        _replied(page, 2)
        expect(page.get_by_test_id("stChatMessage").nth(2)).to_contain_text(
            "Typed while it is down", timeout=TIMEOUT_MS
        )
    finally:
        again.close()
