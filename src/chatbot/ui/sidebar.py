"""The sidebar: conversations (new, switch, rename, delete, import) and the current one's tools."""

from __future__ import annotations

import streamlit as st

from chatbot.domain import Conversation, ConversationSummary, ExportFormat
from chatbot.errors import ChatbotError
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.ui import banners, downloads, settings_panel, state

NEW_KEY = "chatbot.new"
CLEAR_KEY = "chatbot.clear"
DELETE_KEY = "chatbot.delete"
LIST_LIMIT = 50
IMPORT_MAX_MB = 10


def render(service: ChatServiceProtocol, conversation: Conversation | None) -> None:
    with st.sidebar:
        st.button(
            "New conversation",
            key=NEW_KEY,
            icon=":material/add:",
            type="primary",
            width="stretch",
            on_click=_new,
            args=(service,),
        )
        _conversation_list(service, conversation.id if conversation else None)
        if conversation is not None and conversation.id is not None:
            st.divider()
            _current(service, conversation, conversation.id)
        st.divider()
        _importer(service)


def _conversation_list(service: ChatServiceProtocol, current: str | None) -> None:
    try:
        summaries = service.list_conversations(limit=LIST_LIMIT)
    except ChatbotError:
        st.caption("Conversations cannot be listed right now.")
        return
    if summaries:
        st.caption("Conversations")
    for summary in summaries:
        st.button(
            _label(summary),
            key=f"chatbot.open.{summary.id}",
            type="secondary" if summary.id == current else "tertiary",
            width="stretch",
            on_click=state.set_current_conversation,
            args=(summary.id,),
        )


def _label(summary: ConversationSummary) -> str:
    title = summary.title if len(summary.title) <= 40 else summary.title[:39] + "…"
    return title


def _current(service: ChatServiceProtocol, conversation: Conversation, cid: str) -> None:
    title_key = f"chatbot.title.{cid}"
    st.text_input(
        "Title",
        value=conversation.title,
        key=title_key,
        max_chars=200,
        on_change=_rename,
        args=(service, cid, title_key),
    )
    settings_panel.render(service, conversation)
    downloads.render(conversation)
    st.button(
        "🧹 Clear conversation",
        key=CLEAR_KEY,
        width="stretch",
        on_click=_clear,
        args=(service, cid),
        help="Delete every message, keep the title and settings",
    )
    st.button(
        "Delete conversation",
        key=DELETE_KEY,
        icon=":material/delete:",
        type="tertiary",
        width="stretch",
        on_click=_delete,
        args=(service, cid),
    )


def _importer(service: ChatServiceProtocol) -> None:
    upload = st.file_uploader(
        "Import a conversation",
        type=["csv", "json"],
        key=state.upload_key(),
        max_upload_size=IMPORT_MAX_MB,
        help="A file downloaded here (CSV or JSON), or the seed app's CSV",
    )
    banners.show_flashes("import")  # what became of the last import, next to its control
    if upload is None:
        return
    state.reset_uploader()
    try:
        fmt = ExportFormat.from_filename(upload.name)
        text = upload.getvalue().decode("utf-8-sig")
        imported = service.import_conversation(text, fmt)
    except UnicodeDecodeError:
        state.flash(
            state.Banner("warning", f"{upload.name} is not a UTF-8 text file.", place="import")
        )
    except ChatbotError as exc:
        state.flash(banners.describe(exc, place="import"))
    else:
        state.set_current_conversation(imported.id)
        state.flash(state.Banner("success", f"Imported {upload.name}.", "✅", place="import"))
    st.rerun()


def _new(service: ChatServiceProtocol) -> None:
    try:
        created = service.create_conversation()
    except ChatbotError as exc:
        state.flash(banners.describe(exc))
        return
    state.set_current_conversation(created.id)


def _rename(service: ChatServiceProtocol, cid: str, key: str) -> None:
    title = str(st.session_state.get(key) or "").strip()
    if not title:
        return
    try:
        service.update_conversation(cid, title=title)
    except ChatbotError as exc:
        state.flash(banners.describe(exc))


def _clear(service: ChatServiceProtocol, cid: str) -> None:
    try:
        service.clear_conversation(cid)
    except ChatbotError as exc:
        state.flash(banners.describe(exc))


def _delete(service: ChatServiceProtocol, cid: str) -> None:
    try:
        service.delete_conversation(cid)
    except ChatbotError as exc:
        state.flash(banners.describe(exc))
        return
    state.set_current_conversation(None)
