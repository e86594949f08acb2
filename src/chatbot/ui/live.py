"""A tab follows its conversation: what another tab sends, and its reply, appear without a click.

While no reply runs here, a fragment reads the conversation every :data:`FOLLOW_EVERY_S` and
reruns the page when it changed (a new message, a reply started or ended, a new title). A reply
that started elsewhere is then attached to and streams live, as after a refresh.
"""

from __future__ import annotations

import logging

import streamlit as st

from chatbot.domain import Conversation, MessageStatus
from chatbot.errors import ChatbotError, NotFoundError
from chatbot.service.protocol import ChatServiceProtocol

logger = logging.getLogger(__name__)

FOLLOW_EVERY_S = 2.0

Signature = tuple[str, int, str | None, MessageStatus | None]


def signature(conversation: Conversation) -> Signature:
    """What, when it changes, is worth redrawing the page for."""
    last = conversation.messages[-1] if conversation.messages else None
    return (
        conversation.title,
        len(conversation.messages),
        last.id if last else None,
        last.status if last else None,
    )


def follow(service: ChatServiceProtocol, conversation: Conversation) -> None:
    """Start following ``conversation`` as this run drew it."""
    if conversation.id is not None:
        _poll(service, conversation.id, signature(conversation))


@st.fragment(run_every=FOLLOW_EVERY_S)
def _poll(service: ChatServiceProtocol, conversation_id: str, seen: Signature) -> None:
    try:
        now = signature(service.get_conversation(conversation_id))
    except NotFoundError:
        now = None  # deleted in another tab: the page says so
    except ChatbotError as exc:
        logger.debug("not following for now: %s", exc)  # the backend is away; poll again
        return
    if now != seen:
        st.rerun(scope="app")
