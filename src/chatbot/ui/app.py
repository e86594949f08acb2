"""The Streamlit app: ``streamlit run`` runs this file; tests call :func:`render_app`."""

from __future__ import annotations

import streamlit as st

from chatbot.domain import Conversation, MessageStatus, Role
from chatbot.errors import ChatbotError, NotFoundError
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.ui import banners, composer, live, reply_view, sidebar, state, transcript

TITLES = {"monolith": "Monolithic ChatBot App", "microservices": "Microservices ChatBot App"}


def render_app(service: ChatServiceProtocol) -> None:
    """One run of the page, for one browser session."""
    st.set_page_config(page_title="ChatBot", page_icon="💬", layout="centered")
    _header(service)
    action = state.take_action() or composer.read_input()
    conversation = _current_conversation(service, action)
    sidebar.render(service, conversation)
    banners.show_flashes()
    if conversation is None or conversation.id is None:
        composer.render_draft()
        return
    if action is not None:
        messages = transcript.visible_messages(conversation, action)
        transcript.render(messages, interactive=False, hint=False)  # a message is on its way
        reply_view.run_action(service, conversation.id, action)  # ends with a rerun
        return
    running = _maybe_running(conversation)
    transcript.render(transcript.visible_messages(conversation, None), interactive=not running)
    if running:
        reply_view.attach(service, conversation.id)  # ends with a rerun when the reply ends
    composer.render_draft()
    if not running:
        live.follow(service, conversation)


def _header(service: ChatServiceProtocol) -> None:
    st.title(TITLES.get(service.deployment, "ChatBot App"))
    try:
        st.caption(f"Model: `{service.model_id}`")
    except ChatbotError:
        st.caption("Model: unknown (the backend cannot be reached)")


def _current_conversation(
    service: ChatServiceProtocol, action: state.Action | None
) -> Conversation | None:
    """The conversation in the URL, else the newest, else a new one; None when unreachable."""
    try:
        cid = state.current_conversation_id()
        if cid is not None:
            try:
                return service.get_conversation(cid)
            except NotFoundError:
                state.flash(state.Banner("warning", "That conversation no longer exists."))
        newest = service.list_conversations(limit=1)
        conversation = (
            service.get_conversation(newest[0].id) if newest else service.create_conversation()
        )
    except ChatbotError as exc:
        if action is not None and action.kind == "send":
            state.keep_draft(action.text)
        banners.show(exc)
        st.button("Retry", key="chatbot.reload", icon=":material/refresh:")
        return None
    state.set_current_conversation(conversation.id)
    return conversation


def _maybe_running(conversation: Conversation) -> bool:
    """A reply may be in progress: the last message streams, or waits for its answer."""
    if not conversation.messages:
        return False
    last = conversation.messages[-1]
    return last.status is MessageStatus.STREAMING or last.role is Role.USER


def main() -> None:
    from chatbot.ui.wiring import service_from_environment

    try:
        service = service_from_environment()
    except ChatbotError as exc:
        st.set_page_config(page_title="ChatBot", page_icon="💬")
        st.error(f"The chat service cannot start: {exc.message}", icon="⚠️")
        st.stop()
    render_app(service)


if __name__ == "__main__":
    main()
