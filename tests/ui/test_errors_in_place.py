"""Errors where the user acted: a refused message next to the message box, details folded."""

from __future__ import annotations

from typing import Any

import pytest

from chatbot.service.protocol import ChatServiceProtocol
from chatbot.ui.composer import RETRY_KEY
from tests.ui.conftest import SHORT, new_app

pytestmark = pytest.mark.slow


def _order(at: Any) -> list[str]:
    """The main area's elements, top to bottom, by type."""
    return [node.type for node in at.main.children.values()]


def test_a_refused_message_is_explained_next_to_the_box_with_details_folded(
    ui_service: ChatServiceProtocol,
) -> None:
    conversation = ui_service.create_conversation(params=SHORT)
    at = new_app(ui_service, conversation).run()
    too_long = "x" * (ui_service.limits().max_message_chars + 1)
    at.chat_input[0].set_value(too_long).run()
    assert not at.exception
    assert len(at.warning) == 1
    assert "That cannot be sent" in at.warning[0].value
    assert "characters" in at.warning[0].value  # what to fix, in words
    details = [e for e in at.main.expander if e.label == "Details"]
    assert len(details) == 1  # the technical text, folded
    assert "InvalidRequestError (message_too_long)" in details[0].code[0].value
    assert at.text_area(key="chatbot.draft_box").value == too_long  # nothing typed is lost
    assert at.button(key=RETRY_KEY).label == "Retry"
    order = _order(at)
    # Below the conversation (here empty), right above the kept message: not at the page top.
    assert order.index("warning") > order.index("title"), order
    assert order.index("warning") < order.index("text_area"), order
    assert not at.error  # one banner, no second one at the top
