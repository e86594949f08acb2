"""The Streamlit app driven by AppTest, in process and over HTTP to a real backend."""

from __future__ import annotations

import csv
import io
import re
import socket
import threading
import time
from typing import Any

import pytest

from chatbot.domain import MessageStatus, Role
from chatbot.service.http import HttpChatService
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.ui.composer import RETRY_KEY
from chatbot.ui.reply_view import stop_reply
from chatbot.ui.sidebar import CLEAR_KEY, DELETE_KEY, NEW_KEY
from chatbot.ui.transcript import REGENERATE_KEY
from tests.fixtures.prompts import LONG_PROMPT
from tests.ui.conftest import SHORT, new_app

pytestmark = pytest.mark.slow


def _bubbles(at: Any) -> list[tuple[str, str]]:
    return [(m.name, " ".join(md.value for md in m.markdown)) for m in at.chat_message]


def test_title_names_the_deployment_and_the_model(ui_service: ChatServiceProtocol) -> None:
    at = new_app(ui_service).run()
    assert not at.exception
    expected = {"monolith": "Monolithic ChatBot App", "microservices": "Microservices ChatBot App"}
    assert at.title[0].value == expected[ui_service.deployment]
    assert ui_service.model_id in at.caption[0].value


def test_send_streams_the_reply_and_stores_both_messages(ui_service: ChatServiceProtocol) -> None:
    conversation = ui_service.create_conversation(params=SHORT)
    at = new_app(ui_service, conversation).run()
    at.chat_input[0].set_value("Say hello <script>alert(1)</script>").run()
    assert not at.exception
    bubbles = _bubbles(at)
    assert [name for name, _ in bubbles] == ["user", "assistant"]
    # HTML is shown as text: escaped for Markdown, never passed through as a tag.
    assert "&lt;script>alert(1)&lt;/script>" in bubbles[0][1]
    assert bubbles[1][1].strip()
    assert re.search(
        r"\d+ tokens · [\d.]+ tokens/s · first token [\d.]+ s", at.chat_message[1].caption[0].value
    )
    stored = ui_service.get_conversation(conversation.id or "")
    assert [m.role for m in stored.messages] == [Role.USER, Role.ASSISTANT]
    assert stored.messages[0].content == "Say hello <script>alert(1)</script>"
    assert stored.messages[1].status is MessageStatus.COMPLETE
    assert at.query_params["c"] == [conversation.id] or at.query_params["c"] == conversation.id


def test_regenerate_replaces_the_last_reply(ui_service: ChatServiceProtocol) -> None:
    conversation = ui_service.create_conversation(params=SHORT)
    at = new_app(ui_service, conversation).run()
    at.chat_input[0].set_value("Name a colour.").run()
    first = ui_service.get_conversation(conversation.id or "").messages[-1]
    at.button(key=REGENERATE_KEY).click().run()
    assert not at.exception
    messages = ui_service.get_conversation(conversation.id or "").messages
    assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT]
    assert messages[-1].id != first.id
    assert messages[-1].status is MessageStatus.COMPLETE


def test_edit_an_earlier_message_answers_again(ui_service: ChatServiceProtocol) -> None:
    conversation = ui_service.create_conversation(params=SHORT)
    at = new_app(ui_service, conversation).run()
    at.chat_input[0].set_value("Hi").run()
    user = ui_service.get_conversation(conversation.id or "").messages[0]
    at.button(key=f"chatbot.edit.{user.id}").click().run()
    at.text_area(key=f"chatbot.edit_text.{user.id}").set_value("Hello there")
    at.button(key=f"chatbot.edit_send.{user.id}").click().run()
    assert not at.exception
    messages = ui_service.get_conversation(conversation.id or "").messages
    assert [(m.role, m.content) for m in messages[:1]] == [(Role.USER, "Hello there")]
    assert len(messages) == 2
    assert _bubbles(at)[0] == ("user", "Hello there")


def test_clear_removes_every_message(ui_service: ChatServiceProtocol) -> None:
    conversation = ui_service.create_conversation(params=SHORT)
    at = new_app(ui_service, conversation).run()
    at.chat_input[0].set_value("Hi").run()
    assert len(at.chat_message) == 2
    at.button(key=CLEAR_KEY).click().run()
    assert not at.exception
    assert len(at.chat_message) == 0
    assert ui_service.get_conversation(conversation.id or "").messages == ()


def test_download_gives_the_seed_csv(
    ui_service: ChatServiceProtocol, downloads: list[dict[str, Any]]
) -> None:
    conversation = ui_service.create_conversation(params=SHORT)
    at = new_app(ui_service, conversation).run()
    at.chat_input[0].set_value('Quote "this", please').run()
    reply = ui_service.get_conversation(conversation.id or "").messages[-1].content
    csv_files = [d for d in downloads if (d["filename"] or "").endswith(".csv")]
    assert csv_files, downloads
    last = csv_files[-1]
    assert re.fullmatch(r"conversation_\d{14}\.csv", last["filename"])
    rows = list(csv.reader(io.StringIO(last["data"].decode())))
    assert rows == [["is_user", "text"], ["True", 'Quote "this", please'], ["False", reply]]
    names = {d["filename"].rsplit(".", 1)[-1] for d in downloads if d["filename"]}
    assert {"csv", "json", "md"} <= names


def test_switch_rename_and_delete_conversations(ui_service: ChatServiceProtocol) -> None:
    first = ui_service.create_conversation(title="First chat", params=SHORT)
    second = ui_service.create_conversation(title="Second chat", params=SHORT)
    at = new_app(ui_service, first).run()
    assert {"First chat", "Second chat"} <= {b.label for b in at.sidebar.button}
    at.button(key=f"chatbot.open.{second.id}").click().run()
    assert at.query_params["c"] in (second.id, [second.id])
    assert at.text_input(key=f"chatbot.title.{second.id}").value == "Second chat"
    at.text_input(key=f"chatbot.title.{second.id}").set_value("Renamed").run()
    assert ui_service.get_conversation(second.id or "").title == "Renamed"
    at.button(key=DELETE_KEY).click().run()
    assert not at.exception
    ids = {s.id for s in ui_service.list_conversations()}
    assert second.id not in ids and first.id in ids
    at.button(key=NEW_KEY).click().run()
    blank_id = _current_id(at)
    assert blank_id != first.id
    blank = ui_service.get_conversation(blank_id)
    assert blank.messages == () and blank.title == "New conversation"
    count = len(ui_service.list_conversations(limit=200))
    at.button(key=NEW_KEY).click().run()  # still blank: reused, not another one
    assert _current_id(at) == blank_id
    assert len(ui_service.list_conversations(limit=200)) == count


def _current_id(at: Any) -> str:
    value = at.query_params["c"]
    return str(value[0] if isinstance(value, list) else value)


def test_title_box_follows_the_stored_title(ui_service: ChatServiceProtocol) -> None:
    conversation = ui_service.create_conversation(params=SHORT)
    cid = conversation.id or ""
    at = new_app(ui_service, conversation).run()
    assert at.text_input(key=f"chatbot.title.{cid}").value == "New conversation"
    at.chat_input[0].set_value("Plan a picnic").run()
    assert ui_service.get_conversation(cid).title == "Plan a picnic"
    assert at.text_input(key=f"chatbot.title.{cid}").value == "Plan a picnic"
    ui_service.update_conversation(cid, title="Picnic (renamed elsewhere)")
    at.run()
    assert at.text_input(key=f"chatbot.title.{cid}").value == "Picnic (renamed elsewhere)"
    # A box cleared by hand renames nothing and shows the stored title again.
    at.text_input(key=f"chatbot.title.{cid}").set_value("  ").run()
    assert ui_service.get_conversation(cid).title == "Picnic (renamed elsewhere)"
    assert at.text_input(key=f"chatbot.title.{cid}").value == "Picnic (renamed elsewhere)"
    # Told again when the conversation changes, so a browser's lagging copy is corrected.
    at.chat_input[0].set_value("And drinks?").run()
    assert at.text_input(key=f"chatbot.title.{cid}").value == "Picnic (renamed elsewhere)"


def _as_code_box_shows(text: str) -> str:
    return text.removeprefix("\n").removesuffix("\n")


def test_messages_have_copy_controls_and_delete_asks_first(
    ui_service: ChatServiceProtocol,
) -> None:
    conversation = ui_service.create_conversation(params=SHORT)
    cid = conversation.id or ""
    at = new_app(ui_service, conversation).run()
    assert "Type a message below" in at.markdown[0].value  # the empty-state hint
    at.chat_input[0].set_value("Copy **this**").run()
    assert not any("Type a message below" in m.value for m in at.markdown)
    stored = ui_service.get_conversation(cid).messages
    # Each bubble's Copy shows the exact text (Markdown source) in a code box with a copy button.
    # (st.code drops one newline at each end of its body; a sampled reply may end in one.)
    codes = [c.value for c in at.code]
    assert codes == [_as_code_box_shows(m.content) for m in stored[:2]]
    delete = at.button(key=DELETE_KEY)
    assert delete.label == "Delete for good"  # inside the "Delete conversation" popover
    assert ui_service.get_conversation(cid).id == cid  # nothing deleted until that click


def test_stop_ends_the_reply_and_keeps_its_text(ui_service: ChatServiceProtocol) -> None:
    conversation = ui_service.create_conversation(
        # The test backend's cap, greedy (a sampled reply may end before the Stop): seconds of
        # tokens left when the Stop comes, on any engine.
        params=SHORT.model_copy(
            update={"max_new_tokens": 256, "temperature": 0.0, "ignore_eos": True}
        )
    )
    cid = conversation.id or ""
    at = new_app(ui_service, conversation).run()
    at.chat_input[0].set_value(LONG_PROMPT)
    runner = threading.Thread(target=at.run)
    runner.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the reply is running
        if len(ui_service.get_conversation(cid).messages) == 2:
            break
        time.sleep(0.05)
    # Live text through attach(), not the copy saved every 0.5 s: the reply is short.
    for event in ui_service.attach(cid):
        if event.delta:
            break
    stop_reply(ui_service, cid)  # what the Stop button's click runs
    runner.join(timeout=120)
    assert not runner.is_alive()
    assert not at.exception
    reply = ui_service.get_conversation(cid).messages[-1]
    assert reply.status is MessageStatus.STOPPED
    assert reply.content
    assert reply.stats is None or reply.stats.completion_tokens < 256
    assert "stopped" in at.chat_message[1].caption[0].value


def test_a_new_page_attaches_to_a_reply_in_progress(ui_service: ChatServiceProtocol) -> None:
    conversation = ui_service.create_conversation(params=SHORT)
    cid = conversation.id or ""
    stream = ui_service.send_message(cid, "Hello")  # another tab started it; nobody reads
    at = new_app(ui_service, conversation).run()  # a refresh: the page re-attaches
    assert not at.exception
    close = getattr(stream, "close", None)
    if callable(close):
        close()
    stored = ui_service.get_conversation(cid).messages[-1]
    assert stored.status is MessageStatus.COMPLETE
    bubbles = _bubbles(at)
    assert bubbles[-1][0] == "assistant"
    assert bubbles[-1][1].strip()
    # Once the attached reply ends the page redraws it as stored, Edit and Regenerate included.
    assert at.button(key=REGENERATE_KEY).label == "Regenerate"
    assert at.button(key=f"chatbot.edit.{stored_user_id(ui_service, cid)}").label == "Edit"


def stored_user_id(service: ChatServiceProtocol, cid: str) -> str:
    return next(m.id or "" for m in service.get_conversation(cid).messages if m.role is Role.USER)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_backend_down_shows_a_banner_and_keeps_the_typed_message() -> None:
    service = HttpChatService(f"http://127.0.0.1:{_closed_port()}", connect_timeout_s=2)
    at = new_app(service).run()
    assert not at.exception
    assert "cannot be reached" in at.error[0].value
    assert at.title[0].value == "Microservices ChatBot App"
    at.chat_input[0].set_value("Please remember me").run()
    assert not at.exception
    assert "cannot be reached" in at.error[0].value
    assert at.text_area(key="chatbot.draft_box").value == "Please remember me"
    assert at.button(key=RETRY_KEY).label == "Retry"
