"""Reply versions in the app (AppTest, both transports): ``‹ 2/3 ›`` switches the branch."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest

from chatbot.domain import GenerationParams
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.ui import versions
from chatbot.ui.transcript import REGENERATE_KEY
from tests.ui.conftest import new_app

pytestmark = pytest.mark.slow

VARIED = GenerationParams(max_new_tokens=4, temperature=1.0)


def _captions(at: Any, index: int) -> list[str]:
    return [c.value for c in at.chat_message[index].caption]


def test_regenerate_keeps_versions_and_the_arrows_switch(
    ui_service: ChatServiceProtocol, downloads: list[dict[str, Any]]
) -> None:
    conversation = ui_service.create_conversation(params=VARIED)
    cid = conversation.id or ""
    at = new_app(ui_service, conversation).run()
    at.chat_input[0].set_value("Name a colour.").run()
    assert not any(re.fullmatch(r"\d+/\d+", c) for c in _captions(at, 1))  # no control
    at.button(key=REGENERATE_KEY).click().run()
    at.button(key=REGENERATE_KEY).click().run()
    assert not at.exception
    reply = ui_service.get_conversation(cid).messages[-1]
    assert (reply.version, reply.versions) == (3, 3)
    assert "3/3" in _captions(at, 1)
    assert at.button(key=versions.NEXT_KEY.format(reply.id)).disabled

    at.button(key=versions.PREVIOUS_KEY.format(reply.id)).click().run()
    assert not at.exception
    shown = ui_service.get_conversation(cid).messages[-1]
    assert shown.id == reply.sibling_ids[1] and "2/3" in _captions(at, 1)
    assert len(at.chat_message) == 2

    csv_files = [d for d in downloads if (d["filename"] or "").endswith(".csv")]
    rows = list(csv.reader(io.StringIO(csv_files[-1]["data"].decode())))
    assert rows == [["is_user", "text"], ["True", "Name a colour."], ["False", shown.content]]


def test_edit_keeps_the_old_branch_one_click_away(ui_service: ChatServiceProtocol) -> None:
    conversation = ui_service.create_conversation(params=VARIED)
    cid = conversation.id or ""
    at = new_app(ui_service, conversation).run()
    at.chat_input[0].set_value("Hi").run()
    at.chat_input[0].set_value("And then?").run()
    user = ui_service.get_conversation(cid).messages[0]
    at.button(key=f"chatbot.edit.{user.id}").click().run()
    at.text_area(key=f"chatbot.edit_text.{user.id}").set_value("Hello there")
    at.button(key=f"chatbot.edit_send.{user.id}").click().run()
    assert not at.exception
    edited = ui_service.get_conversation(cid).messages
    assert len(at.chat_message) == 2 and "2/2" in _captions(at, 0)

    at.button(key=versions.PREVIOUS_KEY.format(edited[0].id)).click().run()
    assert not at.exception
    assert len(at.chat_message) == 4 and "1/2" in _captions(at, 0)
    assert [m.content for m in ui_service.get_conversation(cid).messages][::2] == [
        "Hi",
        "And then?",
    ]
