"""What the page says while it waits: for the model to load, for a reply's turn, for the backend.

Each wait says why and for about how long, from what the service reports (``waiting`` events,
:meth:`ChatServiceProtocol.status`); none of them leaves a stale message behind: the page
checks again by itself and draws the normal page once the wait is over.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import streamlit as st

from chatbot.domain import ReplyEvent, WaitPhase
from chatbot.errors import ChatbotError
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.ui import state

logger = logging.getLogger(__name__)

LOADING_POLL = timedelta(seconds=1)
RECONNECT_POLL = timedelta(seconds=2)
LOADING_KEY = "chatbot.loading"


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st..."""
    if 10 <= number % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def wait_text(event: ReplyEvent) -> str:
    """A ``waiting`` event in words: "Waiting: 2nd in the queue, about 8 s"."""
    match event.phase:
        case WaitPhase.LOADING:
            return "Loading the model…"
        case WaitPhase.QUEUED:
            position = event.queue_position or 1
            text = f"Waiting: {ordinal(position)} in the queue"
            if event.eta_s is not None:
                text += f", about {max(1, round(event.eta_s))} s"
            return text
        case WaitPhase.READING:
            tokens = event.prompt_tokens or 0
            return f"Reading your message ({tokens:,} tokens)…"
        case _:
            return "Waiting…"


def model_loading(service: ChatServiceProtocol) -> bool:
    """Show the model's loading progress while it loads; True while it does.

    Checked again every second by a fragment, which redraws the whole page once the model is
    ready. A failed load is an error here; an unreachable backend is the caller's to say.
    """
    try:
        status = service.status()
    except ChatbotError:
        return False
    if status.loaded:
        state.loading_done()
        return False
    if status.load_error:
        st.error(f"The model could not be loaded: {status.load_error}", icon="⚠️")
        return True
    _loading_progress(service)
    return True


@st.fragment(run_every=LOADING_POLL)
def _loading_progress(service: ChatServiceProtocol) -> None:
    since = state.loading_since(time.monotonic())
    try:
        loaded = service.status().loaded
    except ChatbotError:
        loaded = False
    if loaded:
        state.loading_done()
        st.rerun(scope="app")
    where = "in this process" if service.deployment == "monolith" else "on the backend"
    elapsed = int(time.monotonic() - since)
    # Not as a context manager: leaving the block would mark it complete.
    box = st.status(f"Loading the model {where}… {elapsed} s", state="running")
    box.write("You can type your message already: it is answered as soon as the model is ready.")


@st.fragment(run_every=RECONNECT_POLL)
def reconnect(service: ChatServiceProtocol) -> None:
    """While the backend cannot be reached: try it every few seconds, redraw once it answers."""
    try:
        service.list_conversations(limit=1)
    except ChatbotError:
        return
    logger.info("the backend answers again")
    st.rerun(scope="app")
