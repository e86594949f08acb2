"""What one browser session remembers between reruns, behind typed helpers.

The current conversation lives in the URL (``?c=<id>``) so a refresh keeps it; everything else
lives in ``st.session_state`` under ``chatbot.*`` keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import streamlit as st

from chatbot.domain import Conversation

CONVERSATION_PARAM = "c"
_ACTION = "chatbot.action"
_DRAFT = "chatbot.draft"
DRAFT_BOX = "chatbot.draft_box"
_FLASH = "chatbot.flash"
_EDITING = "chatbot.editing"
_UPLOADS = "chatbot.uploads"
_SHOWN = "chatbot.shown_conversation"
_LOADING_SINCE = "chatbot.loading_since"

ActionKind = Literal["send", "regenerate", "edit"]
Level = Literal["error", "warning", "info", "success"]
# Where a banner shows: at the top of the page, next to the message box, by the import control.
Place = Literal["top", "composer", "import"]


@dataclass(frozen=True)
class Action:
    """A reply the user asked for; the composer runs it in this rerun."""

    kind: ActionKind
    text: str = ""
    message_id: str | None = None


def current_conversation_id() -> str | None:
    value = st.query_params.get(CONVERSATION_PARAM)
    return value or None


def set_current_conversation(conversation_id: str | None) -> None:
    if conversation_id == current_conversation_id():
        return
    if conversation_id is None:
        st.query_params.pop(CONVERSATION_PARAM, None)
    else:
        st.query_params[CONVERSATION_PARAM] = conversation_id
    st.session_state.pop(_EDITING, None)


def request(action: Action) -> None:
    st.session_state[_ACTION] = action


def take_action() -> Action | None:
    action = st.session_state.pop(_ACTION, None)
    return action if isinstance(action, Action) else None


def keep_draft(text: str | None) -> None:
    """Keep a message that could not be sent, to show it back with a Retry button."""
    if text:
        st.session_state[_DRAFT] = text
        st.session_state[DRAFT_BOX] = text
    else:
        st.session_state.pop(_DRAFT, None)
        st.session_state.pop(DRAFT_BOX, None)


def draft() -> str | None:
    value = st.session_state.get(_DRAFT)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Banner:
    level: Level
    text: str
    icon: str = "⚠️"
    place: Place = "top"
    details: str | None = None  # technical words, behind an expander


def flash(banner: Banner) -> None:
    """A banner for the next rerun (a reply ends with ``st.rerun``, which clears the page)."""
    st.session_state.setdefault(_FLASH, []).append(banner)


def take_flashes(place: Place = "top") -> list[Banner]:
    """The banners waiting for ``place``; the others stay for their own place."""
    items = st.session_state.get(_FLASH, [])
    items = list(items) if isinstance(items, list) else []
    taken = [b for b in items if isinstance(b, Banner) and b.place == place]
    st.session_state[_FLASH] = [b for b in items if b not in taken]
    return taken


def remember_shown(conversation: Conversation) -> None:
    """The conversation last drawn, to keep it on screen while the backend cannot be reached."""
    st.session_state[_SHOWN] = conversation


def last_shown() -> Conversation | None:
    value = st.session_state.get(_SHOWN)
    if isinstance(value, Conversation) and value.id == current_conversation_id():
        return value
    return None


def loading_since(now: float) -> float:
    """When this page first saw the model loading (its progress counts from there)."""
    value = st.session_state.setdefault(_LOADING_SINCE, now)
    return float(value)


def loading_done() -> None:
    st.session_state.pop(_LOADING_SINCE, None)


def editing() -> str | None:
    value = st.session_state.get(_EDITING)
    return value if isinstance(value, str) else None


def set_editing(message_id: str | None) -> None:
    if message_id is None:
        st.session_state.pop(_EDITING, None)
    else:
        st.session_state[_EDITING] = message_id


def upload_key() -> str:
    """The file uploader's key; bumped after an import so the same file is not read twice."""
    return f"chatbot.import.{st.session_state.get(_UPLOADS, 0)}"


def reset_uploader() -> None:
    st.session_state[_UPLOADS] = int(st.session_state.get(_UPLOADS, 0)) + 1


_USER = "chatbot.user"


def bind_user(user_id: str) -> None:
    """Start afresh when another user signs in on this session (nothing of theirs is kept)."""
    previous = st.session_state.get(_USER)
    if previous is not None and previous != user_id:
        forget_user()
    st.session_state[_USER] = user_id


def forget_user() -> None:
    """Drop everything this session remembers about its user's conversations: the current
    conversation in the URL, titles, drafts, banners and widget states (all ``chatbot.*``)."""
    for key in [k for k in st.session_state if str(k).startswith("chatbot.")]:
        del st.session_state[key]
    st.query_params.pop(CONVERSATION_PARAM, None)
