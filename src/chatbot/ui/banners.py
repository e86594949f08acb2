"""Errors become short banners that say what happened and what to do; never a stack trace."""

from __future__ import annotations

import logging

import streamlit as st

from chatbot.errors import (
    BackendUnreachableError,
    ChatbotError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    UnavailableError,
)
from chatbot.ui.state import Banner, take_flashes

logger = logging.getLogger(__name__)


def describe(error: ChatbotError) -> Banner:
    """The banner for an error: what happened, in words, and what to do."""
    match error:
        case BackendUnreachableError():
            return Banner("error", f"The chat backend cannot be reached. {error.message}", "🔌")
        case OverloadedError():
            return Banner(
                "warning",
                f"The model is busy with other messages. Try again in {error.retry_after_s} s.",
                "⏳",
            )
        case UnavailableError():
            return Banner("warning", f"The chat service is not ready: {error.message}", "⏳")
        case ConflictError(code="reply_in_progress"):
            return Banner("warning", "A reply is still being written here. Stop it or wait.")
        case ConflictError():
            return Banner("warning", f"That cannot be done now: {error.message}")
        case NotFoundError():
            return Banner("warning", "That conversation no longer exists.")
        case InvalidRequestError():
            return Banner("warning", f"That cannot be sent: {error.message}")
        case _:
            return Banner("error", f"Something went wrong: {error.message}")


def show(error: ChatbotError) -> None:
    logger.info("showing a banner for %s", type(error).__name__)
    render(describe(error))


def show_flashes() -> None:
    for banner in take_flashes():
        render(banner)


def render(banner: Banner) -> None:
    match banner.level:
        case "error":
            st.error(banner.text, icon=banner.icon)
        case "warning":
            st.warning(banner.text, icon=banner.icon)
        case "info":
            st.info(banner.text, icon=banner.icon)
        case "success":
            st.success(banner.text, icon=banner.icon)
