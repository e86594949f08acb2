"""What makes a following tab redraw: a new message, a reply starting or ending, a new title."""

from __future__ import annotations

from chatbot.domain import Conversation, Message, MessageStatus
from chatbot.ui.live import signature


def test_signature_changes_for_what_a_following_tab_must_show() -> None:
    asked = Conversation(id="c", messages=(Message.user("Hi").model_copy(update={"id": "1"}),))
    streaming = Message.assistant("").model_copy(
        update={"id": "2", "status": MessageStatus.STREAMING}
    )
    replying = asked.model_copy(update={"messages": (*asked.messages, streaming)})
    done = replying.model_copy(
        update={
            "messages": (
                asked.messages[0],
                streaming.model_copy(update={"content": "Hello", "status": MessageStatus.COMPLETE}),
            )
        }
    )
    renamed = done.model_copy(update={"title": "Greetings"})
    seen = [signature(c) for c in (Conversation(id="c"), asked, replying, done, renamed)]
    assert len(set(seen)) == len(seen)
    # The text of a reply in progress is not polled: the page attaches to its stream instead.
    more = replying.model_copy(
        update={"messages": (asked.messages[0], streaming.model_copy(update={"content": "He"}))}
    )
    assert signature(more) == signature(replying)
