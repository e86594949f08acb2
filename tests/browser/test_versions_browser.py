"""Reply versions in a real Chromium, in both deployments: ``‹ 2/3 ›``, switching, exporting.

Screenshots of each state go to ``artifacts/issue14/`` (kept in the repository).
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from chatbot.domain import GenerationParams
from chatbot.service.http import HttpChatService
from chatbot.store import ConversationStore
from tests.browser.conftest import UIProcess
from tests.fixtures.servers import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPLY_TIMEOUT_MS = 240_000
STATS = re.compile(r"\d+ tokens · [\d.]+ tokens/s")
SHOTS = ROOT / "artifacts" / "issue14"
# Sampling, so that the versions differ on screen; the checks compare with what is stored.
VARIED = GenerationParams(max_new_tokens=10, temperature=1.0)


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def _bubble_text(page: Any, index: int) -> str:
    bubble = page.get_by_test_id("stChatMessage").nth(index)
    return str(bubble.get_by_test_id("stMarkdownContainer").first.inner_text()).strip()


def _words(text: str) -> list[str]:
    """The words of a reply, as stored (Markdown) or as drawn: a sampled reply may hold Markdown
    that draws as nothing (``****``), list numbers drawn as markers, or a trailing newline."""
    return [word for word in re.findall(r"\w+", text) if not word.isdigit()]


def _shows(page: Any, index: int, stored: str) -> None:
    """Bubble ``index`` draws the stored text (waiting for the page to catch up)."""
    expect(page.get_by_test_id("stChatMessage").nth(index)).to_be_visible(timeout=REPLY_TIMEOUT_MS)
    deadline = time.monotonic() + REPLY_TIMEOUT_MS / 1000
    while _words(_bubble_text(page, index)) != _words(stored):
        assert time.monotonic() < deadline, (_bubble_text(page, index), stored)
        page.wait_for_timeout(200)


def _wait_settled(page: Any, count: int) -> None:
    page.get_by_text(STATS).first.wait_for(timeout=REPLY_TIMEOUT_MS)
    expect(page.get_by_test_id("stChatMessage")).to_have_count(count, timeout=REPLY_TIMEOUT_MS)


def _download_csv(page: Any, tmp_path: Path) -> list[list[str]]:
    with page.expect_download() as info:
        page.get_by_role("button", name="💾 Download conversation").click()
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    with target.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _navigate_versions(page: Any, read: Callable[[], list[str]], tag: str, tmp_path: Path) -> None:
    """Send, regenerate twice, step back a version, export; edit, step back to the original."""
    bubbles = page.get_by_test_id("stChatMessage")
    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for(timeout=REPLY_TIMEOUT_MS)
    box.fill("Name a colour.")
    box.press("Enter")
    _wait_settled(page, 2)
    for count in (2, 3):
        page.get_by_role("button", name="Regenerate").click()
        page.get_by_text(f"{count}/{count}", exact=True).wait_for(timeout=REPLY_TIMEOUT_MS)
        _wait_settled(page, 2)
    _shows(page, 1, read()[1])
    _shot(page, f"versions-{tag}-3-of-3")

    bubbles.nth(1).get_by_role("button", name="‹").click()
    page.get_by_text("2/3", exact=True).wait_for(timeout=REPLY_TIMEOUT_MS)
    _shows(page, 1, read()[1])
    _shot(page, f"versions-{tag}-2-of-3")
    rows = _download_csv(page, tmp_path)
    assert rows == [["is_user", "text"], ["True", "Name a colour."], ["False", read()[1]]]

    bubbles.nth(0).get_by_role("button", name="Edit").click()
    page.get_by_label("Edit your message").fill("Name a fruit.")
    page.get_by_role("button", name="Send", exact=True).click()
    page.get_by_text("2/2", exact=True).wait_for(timeout=REPLY_TIMEOUT_MS)
    _wait_settled(page, 2)
    expect(bubbles.nth(0)).to_contain_text("Name a fruit.")
    assert read()[0] == "Name a fruit."
    _shot(page, f"versions-{tag}-edited-2-of-2")

    bubbles.nth(0).get_by_role("button", name="‹").click()
    page.get_by_text("1/2", exact=True).wait_for(timeout=REPLY_TIMEOUT_MS)
    expect(bubbles.nth(0)).to_contain_text("Name a colour.", timeout=REPLY_TIMEOUT_MS)
    page.get_by_text("2/3", exact=True).wait_for(timeout=REPLY_TIMEOUT_MS)  # its reply as left
    assert read()[0] == "Name a colour."
    _shows(page, 1, read()[1])
    _shot(page, f"versions-{tag}-original-1-of-2")
    rows = _download_csv(page, tmp_path)
    assert [row[1] for row in rows[1:]] == read()


def _open(browser: Any, url: str) -> Any:
    context = browser.new_context(viewport={"width": 1100, "height": 860}, accept_downloads=True)
    page = context.new_page()
    page.goto(url)
    return page


def test_versions_in_the_monolith(
    browser: Any, start_ui: Callable[..., UIProcess], tmp_path: Path
) -> None:
    data = tmp_path / "ui-data"
    data.mkdir()
    ui = start_ui(CHATBOT_DATA_DIR=str(data))
    page = _open(browser, ui.url)  # the UI opens its store (and migrates it) first
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=REPLY_TIMEOUT_MS)
    store = ConversationStore.open(f"sqlite:///{data / 'chatbot.sqlite3'}")
    try:
        cid = store.create_conversation(params=VARIED).id or ""
        page.goto(f"{ui.url}/?c={cid}")

        def read() -> list[str]:
            return [m.content for m in store.get_conversation(cid).messages]

        _navigate_versions(page, read, "monolith", tmp_path)
    finally:
        store.close()


def test_versions_in_microservices(
    browser: Any, backend_server: Any, start_ui: Callable[..., UIProcess], tmp_path: Path
) -> None:
    ui = start_ui("--backend", backend_server.url)
    service = HttpChatService(backend_server.url)
    try:
        cid = service.create_conversation(params=VARIED).id or ""
        page = _open(browser, f"{ui.url}/?c={cid}")

        def read() -> list[str]:
            return [m.content for m in service.get_conversation(cid).messages]

        _navigate_versions(page, read, "microservices", tmp_path)
    finally:
        service.close()
