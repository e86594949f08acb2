"""The Streamlit app: ``streamlit run`` runs this file; tests call :func:`render_app`."""

from __future__ import annotations

import logging

import streamlit as st

from chatbot.addresses import is_loopback
from chatbot.config import AuthMode, AuthSettings
from chatbot.domain import Conversation, MessageStatus, Role
from chatbot.errors import ChatbotError, NotFoundError, UnavailableError
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.ui import (
    banners,
    composer,
    identity,
    live,
    reply_view,
    sidebar,
    signin,
    state,
    transcript,
    versions,
    waiting,
)

logger = logging.getLogger(__name__)

TITLES = {"monolith": "Monolithic ChatBot App", "microservices": "Microservices ChatBot App"}
SHARED_WARNING = (
    "Anyone who can open this page shares these conversations: this UI has no sign-in "
    "(CHATBOT_AUTH=none) and listens on {host}. Set CHATBOT_AUTH=oidc or header to give each "
    "person their own."
)


def render_for_user(service: ChatServiceProtocol, auth: AuthSettings, ui_host: str) -> None:
    """One run of the page: who is signed in, then their chat, or the sign-in page."""
    account = identity.who(auth)
    if isinstance(account, identity.NoAccount):
        signin.render_no_account(account)
        return
    state.bind_user(account.user.id)
    shared = auth.auth is AuthMode.NONE and not is_loopback(ui_host)
    render_app(
        service.for_user(account.user),
        account if auth.auth is not AuthMode.NONE else None,
        shared_on=ui_host if shared else None,
    )


def render_app(
    service: ChatServiceProtocol,
    account: identity.Account | None = None,
    *,
    shared_on: str | None = None,
) -> None:
    """One run of the page, for one browser session (``service`` is already the user's)."""
    st.set_page_config(page_title="ChatBot", page_icon="💬", layout="centered")
    _header(service)
    if shared_on is not None:
        banners.render(state.Banner("warning", SHARED_WARNING.format(host=shared_on), "👥"))
    if account is not None:
        signin.render_account(account)
    action = state.take_action() or composer.read_input()
    conversation = _current_conversation(service, action)
    sidebar.render(service, None if isinstance(conversation, ChatbotError) else conversation)
    banners.show_flashes()
    if isinstance(conversation, ChatbotError):
        _unreachable(service, conversation)
        return
    if conversation.id is None:
        composer.render_draft()
        return
    state.remember_shown(conversation)
    waiting.model_loading(service)
    if action is not None:
        messages = transcript.visible_messages(conversation, action)
        transcript.render(messages, interactive=False, hint=False)  # a message is on its way
        reply_view.run_action(service, conversation.id, action)  # ends with a rerun
        return
    running = _maybe_running(conversation)
    transcript.render(
        transcript.visible_messages(conversation, None),
        interactive=not running,
        select=_version_selector(service, conversation.id),
    )
    if running:
        reply_view.attach(service, conversation.id)  # ends with a rerun when the reply ends
    banners.show_flashes("composer")
    composer.render_draft()
    if not running:
        live.follow(service, conversation)


def _unreachable(service: ChatServiceProtocol, error: ChatbotError) -> None:
    """The service cannot answer: keep the last transcript and the draft, retry by itself.

    One banner says what happened; the page checks the backend every few seconds and redraws
    itself when it answers. One Retry: the draft's when a message waits, else "Retry now".
    """
    shown = state.last_shown()
    if shown is not None:
        transcript.render(transcript.visible_messages(shown, None), interactive=False)
    if isinstance(error, UnavailableError) and waiting.model_loading(service):
        composer.render_draft()  # the backend loads its model: its progress is the message
        return
    banners.show_flashes("composer")
    banners.render(banners.describe(error))
    composer.render_draft()
    if state.draft() is None:
        st.button("Retry now", key="chatbot.reload", icon=":material/refresh:")
    waiting.reconnect(service)


def _header(service: ChatServiceProtocol) -> None:
    st.title(TITLES.get(service.deployment, "ChatBot App"))
    try:
        st.caption(f"Model: `{service.model_id}`")
    except ChatbotError:
        st.caption("Model: unknown (the backend cannot be reached)")


def _current_conversation(
    service: ChatServiceProtocol, action: state.Action | None
) -> Conversation | ChatbotError:
    """The conversation in the URL, else the newest, else a new one; the error when the
    service cannot answer (a message being sent is kept as the draft)."""
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
        return exc
    state.set_current_conversation(conversation.id)
    return conversation


def _version_selector(service: ChatServiceProtocol, conversation_id: str) -> versions.Select:
    """The callback of the ``‹ 2/3 ›`` control: show that version's branch (the page reruns)."""

    def select(message_id: str) -> None:
        try:
            service.select_version(conversation_id, message_id)
        except ChatbotError as exc:
            state.flash(banners.describe(exc))

    return select


def _maybe_running(conversation: Conversation) -> bool:
    """A reply may be in progress: the last message streams, or waits for its answer."""
    if not conversation.messages:
        return False
    last = conversation.messages[-1]
    return last.status is MessageStatus.STREAMING or last.role is Role.USER


def main() -> None:
    from chatbot.config import UISettings, load
    from chatbot.ui.wiring import service_from_environment

    try:
        auth = load(AuthSettings)
        ui_host = load(UISettings).ui_host
        service = service_from_environment()
    except ChatbotError as exc:
        st.set_page_config(page_title="ChatBot", page_icon="💬")
        st.error(f"The chat service cannot start: {exc.message}", icon="⚠️")
        st.stop()
    render_for_user(service, auth, ui_host)


if __name__ == "__main__":
    main()
