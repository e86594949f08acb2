"""The UI in a real Chromium: monolith (``chatbot ui``) and microservices (``--backend``)."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from chatbot.domain import GenerationParams, MessageStatus
from chatbot.service.http import HttpChatService
from tests.browser.conftest import UIProcess
from tests.fixtures.prompts import LONG_PROMPT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPLY_TIMEOUT_MS = 240_000
STATS = re.compile(r"\d+ tokens · [\d.]+ tokens/s")


def _open(browser: Any, url: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = context.new_page()
    page.goto(url)
    return page


def _chat(page: Any, title: str, message: str) -> tuple[str, str]:
    """Type a message, watch the reply stream in, return (conversation id, reply text)."""
    page.get_by_role("heading", name=title).wait_for(timeout=REPLY_TIMEOUT_MS)
    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for(timeout=REPLY_TIMEOUT_MS)
    box.fill(message)
    box.press("Enter")
    bubbles = page.get_by_test_id("stChatMessage")
    bubbles.nth(1).wait_for(timeout=REPLY_TIMEOUT_MS)  # the reply bubble, while it streams
    page.get_by_text(STATS).first.wait_for(timeout=REPLY_TIMEOUT_MS)  # stored, with stats
    expect(bubbles).to_have_count(2, timeout=REPLY_TIMEOUT_MS)  # the rerun has settled
    assert message in bubbles.nth(0).inner_text()
    reply = bubbles.nth(1).get_by_test_id("stMarkdownContainer").first.inner_text()
    match = re.search(r"[?&]c=([0-9a-f]+)", page.url)
    assert match, page.url
    return match.group(1), reply


def _refresh_keeps_the_conversation(page: Any, message: str, reply: str) -> None:
    page.reload()
    bubbles = page.get_by_test_id("stChatMessage")
    bubbles.nth(1).wait_for(timeout=REPLY_TIMEOUT_MS)
    # The bubble appears before its text is drawn: wait for the text, not just the bubble.
    expect(bubbles.nth(0)).to_contain_text(message, timeout=REPLY_TIMEOUT_MS)
    expect(bubbles.nth(1)).to_contain_text(reply.strip()[:20], timeout=REPLY_TIMEOUT_MS)


def _download_csv(page: Any, tmp_path: Path) -> list[list[str]]:
    with page.expect_download() as info:
        page.get_by_role("button", name="💾 Download conversation").click()
    download = info.value
    assert re.fullmatch(r"conversation_\d{14}\.csv", download.suggested_filename)
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    with target.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_monolith_in_chromium(
    browser: Any, start_ui: Callable[..., UIProcess], artifacts_dir: Path, tmp_path: Path
) -> None:
    # greedy: the download is compared with the drawn reply, and a sampled one may hold Markdown
    ui = start_ui(CHATBOT_MAX_TOKENS_CAP="12", CHATBOT_DEFAULT_TEMPERATURE="0")
    page = _open(browser, ui.url)
    message = "Hello! What is <b>HTML</b>?"
    _, reply = _chat(page, "Monolithic ChatBot App", message)
    assert page.locator("b", has_text="HTML").count() == 0  # shown as text, not a tag
    _refresh_keeps_the_conversation(page, message, reply)
    rows = _download_csv(page, tmp_path)
    assert rows[0] == ["is_user", "text"]
    assert rows[1] == ["True", message]
    assert rows[2][0] == "False" and rows[2][1].strip()[:20] == reply.strip()[:20]
    page.screenshot(path=str(artifacts_dir / "ui-monolith.png"), full_page=True)
    phone = browser.new_context(viewport={"width": 400, "height": 800}).new_page()
    phone.goto(page.url)  # a narrow window: the sidebar folds away, the chat stays readable
    expect(phone.get_by_test_id("stChatMessage")).to_have_count(2, timeout=REPLY_TIMEOUT_MS)
    phone.get_by_role("button", name="Regenerate").wait_for(timeout=REPLY_TIMEOUT_MS)
    phone.screenshot(path=str(artifacts_dir / "ui-monolith-narrow.png"), full_page=True)


def test_microservices_in_chromium(
    browser: Any,
    backend_server: Any,
    start_ui: Callable[..., UIProcess],
    artifacts_dir: Path,
    tmp_path: Path,
) -> None:
    ui = start_ui("--backend", backend_server.url)
    service = HttpChatService(backend_server.url)
    short = service.create_conversation(params=GenerationParams(max_new_tokens=10, temperature=0.0))
    page = _open(browser, f"{ui.url}/?c={short.id}")
    message = "Tell me about Python in one sentence."
    cid, reply = _chat(page, "Microservices ChatBot App", message)
    assert cid == short.id
    _refresh_keeps_the_conversation(page, message, reply)
    rows = _download_csv(page, tmp_path)
    assert rows[:2] == [["is_user", "text"], ["True", message]]
    assert rows[2][0] == "False" and rows[2][1].strip()[:20] == reply.strip()[:20]
    page.screenshot(path=str(artifacts_dir / "ui-microservices.png"), full_page=True)

    # Stop while it streams: the backend's model stops and the partial reply is kept.
    # The session backend's cap, past the end-of-text token: a reply that may end by itself
    # before the browser's click reaches it proves nothing.
    long = service.create_conversation(
        params=GenerationParams(max_new_tokens=256, temperature=0.0, ignore_eos=True)
    )
    page.goto(f"{ui.url}/?c={long.id}")
    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for(timeout=REPLY_TIMEOUT_MS)
    box.fill(LONG_PROMPT)
    box.press("Enter")
    page.get_by_role("button", name="Stop").click(timeout=REPLY_TIMEOUT_MS)
    page.get_by_text("stopped").first.wait_for(timeout=REPLY_TIMEOUT_MS)
    stored = service.get_conversation(long.id or "").messages[-1]
    assert stored.status is MessageStatus.STOPPED
    service.close()
