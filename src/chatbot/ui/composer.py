"""The input box, and a message that could not be sent, kept with a Retry button."""

from __future__ import annotations

import streamlit as st

from chatbot.ui import state

INPUT_KEY = "chatbot.input"
RETRY_KEY = "chatbot.retry"


def read_input() -> state.Action | None:
    """The message typed this run, as a send action. Pinned to the bottom of the page."""
    value = st.chat_input("Message the bot", key=INPUT_KEY, submit_mode="disable")
    text = value.strip() if isinstance(value, str) else ""
    return state.Action("send", text=text) if text else None


def render_draft() -> None:
    """Show back a message that failed to send; Retry sends what the box holds."""
    if state.draft() is None:
        return
    st.text_area("Your message (not sent yet)", key=state.DRAFT_BOX)
    retry, discard = st.columns(2)
    retry.button("Retry", key=RETRY_KEY, type="primary", icon=":material/refresh:", on_click=_retry)
    discard.button("Discard", key="chatbot.discard", on_click=state.keep_draft, args=(None,))


def _retry() -> None:
    text = str(st.session_state.get(state.DRAFT_BOX) or state.draft() or "").strip()
    if text:
        state.request(state.Action("send", text=text))
