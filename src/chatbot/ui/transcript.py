"""The conversation so far: a bubble per message, stats under replies, edit, regenerate, copy.

Messages with several versions show ``‹ 2/3 ›`` (:mod:`chatbot.ui.versions`) next to those.
"""

from __future__ import annotations

import streamlit as st

from chatbot.domain import Conversation, Message, MessageStatus, Role
from chatbot.ui import state, versions
from chatbot.ui.copying import copy_control
from chatbot.ui.text import safe_markdown, stats_caption

REGENERATE_KEY = "chatbot.regenerate"


def visible_messages(conversation: Conversation, action: state.Action | None) -> list[Message]:
    """What to draw before a reply streams: a reply in progress and what an action replaces go."""
    messages = [m for m in conversation.messages if m.role is not Role.SYSTEM]
    if messages and messages[-1].status is MessageStatus.STREAMING:
        messages.pop()
    if action is not None and action.kind == "regenerate":
        while messages and messages[-1].role is Role.ASSISTANT:
            messages.pop()
    if action is not None and action.kind == "edit":
        ids = [m.id for m in messages]
        if action.message_id in ids:
            messages = messages[: ids.index(action.message_id)]
    return messages


def render(
    messages: list[Message],
    *,
    interactive: bool,
    select: versions.Select | None = None,
    hint: bool = True,
) -> None:
    """Draw the messages; ``interactive`` adds edit and regenerate (not while a reply runs).

    ``select`` switches to another version of a message; without it (or while a reply runs)
    the version control is shown disabled. ``hint``: the empty-state hint when there are no
    messages (not while the first one is sent).
    """
    if not interactive:
        select = None
    if not messages:
        if hint:
            _empty_state()
        return
    last_assistant = max(
        (i for i, m in enumerate(messages) if m.role is Role.ASSISTANT), default=None
    )
    for index, message in enumerate(messages):
        if message.role is Role.USER:
            _user_message(message, interactive=interactive, select=select)
        else:
            _assistant_message(
                message, regenerate=interactive and index == last_assistant, select=select
            )


def _empty_state() -> None:
    st.markdown(
        "<div style='text-align:center; opacity:0.6; padding:3rem 0'>"
        "Type a message below to start the conversation.</div>",
        unsafe_allow_html=True,  # our own constant markup, no message text
    )


def _user_message(message: Message, *, interactive: bool, select: versions.Select | None) -> None:
    with st.chat_message("user"):
        if interactive and message.id is not None and state.editing() == message.id:
            _edit_box(message, message.id)
            return
        st.markdown(safe_markdown(message.content))
        if message.id is None:
            return
        with st.container(horizontal=True, gap="small", vertical_alignment="center"):
            versions.render(message, select)
            copy_control(message.content, message.id)
            if interactive:
                _edit_button(message.id)


def _edit_button(message_id: str) -> None:
    st.button(
        "Edit",
        key=f"chatbot.edit.{message_id}",
        icon=":material/edit:",
        type="tertiary",
        help="Edit this message and answer it again",
        on_click=state.set_editing,
        args=(message_id,),
    )


def _edit_box(message: Message, message_id: str) -> None:
    key = f"chatbot.edit_text.{message_id}"
    st.text_area("Edit your message", value=message.content, key=key)
    send, cancel = st.columns(2)
    send.button(
        "Send",
        key=f"chatbot.edit_send.{message_id}",
        type="primary",
        on_click=_send_edit,
        args=(message_id, key),
    )
    cancel.button(
        "Cancel", key=f"chatbot.edit_cancel.{message_id}", on_click=state.set_editing, args=(None,)
    )


def _send_edit(message_id: str, key: str) -> None:
    text = str(st.session_state.get(key, "")).strip()
    state.set_editing(None)
    if text:
        state.request(state.Action("edit", text=text, message_id=message_id))


def _assistant_message(
    message: Message, *, regenerate: bool, select: versions.Select | None
) -> None:
    with st.chat_message("assistant"):
        if message.content:
            st.markdown(safe_markdown(message.content))
        caption = stats_caption(message)
        if caption:
            st.caption(caption)
        with st.container(horizontal=True, gap="small", vertical_alignment="center"):
            versions.render(message, select)
            if message.content and message.id is not None:
                copy_control(message.content, message.id)
            if regenerate:
                st.button(
                    "Regenerate",
                    key=REGENERATE_KEY,
                    icon=":material/refresh:",
                    type="tertiary",
                    help="Answer the last message again",
                    on_click=state.request,
                    args=(state.Action("regenerate"),),
                )
