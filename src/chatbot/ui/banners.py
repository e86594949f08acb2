"""Errors become short banners that say what happened and what to do; never a stack trace.

The words are for people; the technical text (an errno, a status code) goes behind a
"Details" expander. A banner shows where the user acted: a refused message next to the
message box, a failed import next to the import control (see :data:`state.Place`).
"""

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
from chatbot.ui.state import Banner, Place, take_flashes

logger = logging.getLogger(__name__)

UNREACHABLE = "The chat backend cannot be reached."


def describe(error: ChatbotError, place: Place = "top") -> Banner:
    """The banner for an error: what happened, in words, and what to do."""
    details = technical(error)
    match error:
        case BackendUnreachableError():
            return Banner(
                "error",
                f"{UNREACHABLE} This page tries again by itself; your text is kept.",
                "🔌",
                place,
                details,
            )
        case OverloadedError():
            return Banner(
                "warning",
                "The model is busy with other messages; your message was not sent.",
                "⏳",
                place,
                details,
            )
        case UnavailableError():
            return Banner("warning", "The chat service is not ready yet.", "⏳", place, details)
        case ConflictError(code="reply_in_progress"):
            return Banner(
                "warning", "A reply is still being written here. Stop it or wait.", "⚠️", place
            )
        case ConflictError():
            return Banner("warning", f"That cannot be done now: {error.message}", "⚠️", place)
        case NotFoundError():
            return Banner("warning", "That conversation no longer exists.", "⚠️", place)
        case InvalidRequestError():
            return Banner("warning", f"That cannot be sent: {error.message}", "⚠️", place, details)
        case _:
            return Banner("error", "Something went wrong.", "⚠️", place, details)


def technical(error: ChatbotError) -> str:
    """The error's class, code and message: what a bug report needs."""
    code = f" ({error.code})" if error.code else ""
    return f"{type(error).__name__}{code}: {error.message}"


def show(error: ChatbotError) -> None:
    logger.info("showing a banner for %s", type(error).__name__)
    render(describe(error))


def show_flashes(place: Place = "top") -> None:
    for banner in take_flashes(place):
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
    if banner.details:
        with st.expander("Details"):
            st.code(banner.details, language=None, wrap_lines=True)
