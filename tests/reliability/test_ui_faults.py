"""The monolith UI process (``chatbot ui``) in a real Chromium: hostile text stays inert text,
and a kill -9 in the middle of a reply loses nothing that was acknowledged.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from chatbot.domain import GenerationParams, MessageStatus, Role
from chatbot.store import ConversationStore
from tests.browser.conftest import UIProcess
from tests.fixtures.prompts import LONG_PROMPT, REPLY_WORDS
from tests.reliability.support import record
from tests.reliability.test_security import HOSTILE

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.browser]

TIMEOUT_MS = 180_000
STATS = re.compile(r"\d+ tokens · [\d.]+ tokens/s")
COUNT = LONG_PROMPT


def _send(page: Any, text: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for(timeout=TIMEOUT_MS)
    box.fill(text)
    box.press("Enter")


def test_monolith_ui_shows_hostile_text_inert_and_survives_kill_9(
    browser: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'chatbot.sqlite3'}"
    hostile_title = f"{HOSTILE[0]} {HOSTILE[2]}"
    hostile_message = f"{HOSTILE[1]} {HOSTILE[2]} {HOSTILE[0]}"
    store = ConversationStore.open(url)
    try:
        short = store.create_conversation(
            title=hostile_title, params=GenerationParams(max_new_tokens=6)
        )
        long = store.create_conversation(
            title="Long reply",
            params=GenerationParams(max_new_tokens=400, temperature=0.0, ignore_eos=True),
        )
    finally:
        store.close()
    assert short.id and long.id

    ui = UIProcess(env={"CHATBOT_DATA_DIR": str(tmp_path), "CHATBOT_MAX_TOKENS_CAP": "400"})
    dialogs: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        page = context.new_page()

        def on_dialog(dialog: Any) -> None:  # alert() from injected script would land here
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(f"{ui.url}/?c={short.id}")
        page.get_by_text("DROP TABLE messages").first.wait_for(timeout=TIMEOUT_MS)  # the title
        _send(page, hostile_message)
        page.get_by_text(STATS).first.wait_for(timeout=TIMEOUT_MS)  # reply stored
        bubble = page.get_by_test_id("stChatMessage").nth(0)
        shown = bubble.inner_text()
        assert "<script>window.__pwned = 1; alert('xss')</script>" in shown, shown
        assert "<b>bold?</b>" in shown
        assert page.evaluate("window.__pwned") is None
        assert page.locator("b", has_text="bold?").count() == 0
        assert page.locator('img[src="x"]').count() == 0
        assert page.locator('a[href^="javascript:"]').count() == 0

        # kill -9 while the reply to COUNT streams in.
        page.goto(f"{ui.url}/?c={long.id}")
        _send(page, COUNT)
        reply = page.get_by_test_id("stChatMessage").nth(1)
        reply.get_by_text(REPLY_WORDS).first.wait_for(timeout=TIMEOUT_MS)
        saved = _wait_for_saved_text(url, long.id)
        os.kill(ui.process.pid, signal.SIGKILL)
        ui.process.wait(30)
        time.sleep(0.5)
        assert page.evaluate("window.__pwned") is None
    finally:
        context.close()
        ui.close()

    store = ConversationStore.open(url)  # recovery runs here, as at the UI's next start
    try:
        messages = store.get_conversation(long.id).messages
        assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT]
        assert messages[0].content == COUNT and messages[0].status is MessageStatus.COMPLETE
        assert messages[1].status is MessageStatus.INTERRUPTED
        assert messages[1].content.startswith(saved[:20]) and messages[1].content
        kept = store.get_conversation(short.id)
        assert kept.title == hostile_title
        assert [m.content for m in kept.messages if m.role is Role.USER] == [hostile_message]
        assert len(store.list_conversations()) == 2
    finally:
        store.close()
    record(
        "process_faults_ui",
        {
            "hostile_text_shown_as_text": True,
            "dialogs": len(dialogs),
            "kill9_reply_status": messages[1].status.value,
            "kill9_saved_chars": len(messages[1].content),
            "user_messages_after_kill": 1,
        },
    )
    assert not dialogs, dialogs


def _wait_for_saved_text(url: str, conversation_id: str, timeout: float = 120) -> str:
    """Until the UI process has saved part of the streaming reply (it does every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        store = ConversationStore.open(url)
        try:
            last = store.get_conversation(conversation_id).messages[-1]
        finally:
            store.close()
        assert last.status is MessageStatus.STREAMING, f"the reply ended first: {last.status}"
        if last.content:
            return last.content
        assert time.monotonic() < deadline, "no partial text was saved"
        time.sleep(0.2)
