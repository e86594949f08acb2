"""The ``‹ 2/3 ›`` control under a message that has several versions.

Regenerate and Edit keep earlier versions; a click here asks the service to show the branch
through the neighbouring version (the page reruns after the callback and draws that branch).
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from chatbot.domain import Message

# Called with the id of the version to show.
Select = Callable[[str], None]

PREVIOUS_KEY = "chatbot.version_previous.{}"
NEXT_KEY = "chatbot.version_next.{}"


def label(message: Message) -> str:
    return f"{message.version}/{message.versions}"


def neighbours(message: Message) -> tuple[str | None, str | None]:
    """The ids of the versions before and after this one (None at either end)."""
    index = message.version - 1
    siblings = message.sibling_ids
    previous = siblings[index - 1] if index > 0 else None
    following = siblings[index + 1] if index + 1 < len(siblings) else None
    return previous, following


def render(message: Message, select: Select | None) -> None:
    """Draw the control (nothing for a single version); ``select`` None disables it."""
    if message.id is None or message.versions < 2:
        return
    previous, following = neighbours(message)
    _arrow("‹", PREVIOUS_KEY.format(message.id), "Previous version", previous, select)
    st.caption(label(message), width="content")
    _arrow("›", NEXT_KEY.format(message.id), "Next version", following, select)


def _arrow(text: str, key: str, hint: str, target: str | None, select: Select | None) -> None:
    st.button(
        text,
        key=key,
        help=hint,
        type="tertiary",
        disabled=select is None or target is None,
        on_click=select,
        args=(target,),
    )
