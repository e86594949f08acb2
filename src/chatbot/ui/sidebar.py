"""The sidebar: conversations (new, search, switch by date, rename, delete, import) and tools."""

from __future__ import annotations

import streamlit as st

from chatbot.domain import Conversation, ConversationSummary, ExportFormat
from chatbot.errors import ChatbotError
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.ui import banners, dates, downloads, live, settings_panel, state
from chatbot.ui.text import safe_label

NEW_KEY = "chatbot.new"
SEARCH_KEY = "chatbot.search"
CLEAR_KEY = "chatbot.clear"
DELETE_KEY = "chatbot.delete"
LIST_LIMIT = 50
IMPORT_MAX_MB = 10
DEFAULT_TITLE = Conversation.model_fields["title"].default


def render(service: ChatServiceProtocol, conversation: Conversation | None) -> None:
    with st.sidebar:
        st.button(
            "New conversation",
            key=NEW_KEY,
            icon=":material/add:",
            type="primary",
            width="stretch",
            on_click=_new,
            args=(service, conversation),
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
    if not summaries:
        return
    query = st.text_input(
        "Search conversations",
        key=SEARCH_KEY,
        placeholder="Search titles",
        icon=":material/search:",
        label_visibility="collapsed",
    )
    shown = dates.matching(summaries, query) if query else summaries
    if not shown:
        st.caption("No conversation title matches.")
    now = dates.browser_now(st.context.timezone)
    for group, members in dates.grouped(shown, now):
        st.caption(group)
        for summary in members:
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
    return safe_label(title)  # a label renders Markdown, images included


def _current(service: ChatServiceProtocol, conversation: Conversation, cid: str) -> None:
    title_key = f"chatbot.title.{cid}"
    seen_key = f"chatbot.title_seen.{cid}"
    shown = st.session_state.get(title_key)
    blank = not isinstance(shown, str) or not shown.strip()
    seen = live.signature(conversation)
    if st.session_state.get(seen_key) != seen or blank:
        # Told again whenever the conversation changed (named after the first message, renamed
        # or answered in another tab), and when the box holds no title (Streamlit dropped its
        # state, or it was cleared by hand, which renames nothing). A keyed box shows what it
        # held unless told, and the browser's copy can lag the server's: a tab that followed
        # another tab's reply showed an empty box in 2 of 9 runs until this was sent with
        # every change (0 of 6 since). The cost: text typed into the box but not yet entered
        # is replaced when the conversation changes.
        st.session_state[title_key] = conversation.title
        st.session_state[seen_key] = seen
    st.text_input(
        "Title",
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
    with st.popover(
        "Delete conversation", icon=":material/delete:", type="tertiary", width="stretch"
    ):
        st.markdown(f"Delete **{safe_label(conversation.title)}** and all its messages?")
        st.button(
            "Delete for good",
            key=DELETE_KEY,
            icon=":material/delete_forever:",
            type="primary",
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


def _new(service: ChatServiceProtocol, current: Conversation | None) -> None:
    """Open an untouched new conversation if there is one, else create one."""
    if current is not None and _untouched(current.title, len(current.messages)):
        return  # already on a blank one
    try:
        blank = next(
            (
                s
                for s in service.list_conversations(limit=LIST_LIMIT)
                if _untouched(s.title, s.message_count)
            ),
            None,
        )
        target = blank.id if blank is not None else service.create_conversation().id
    except ChatbotError as exc:
        state.flash(banners.describe(exc))
        return
    state.set_current_conversation(target)


def _untouched(title: str, message_count: int) -> bool:
    return message_count == 0 and title == DEFAULT_TITLE


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
