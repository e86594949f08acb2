"""A reply on screen: streamed token by token, with a Stop button and retries when busy.

The reply belongs to the service, not to this script run. A click anywhere reruns the script
and interrupts the stream here, while the model goes on; Stop therefore calls
``service.stop`` in its callback, and any later run re-attaches to a reply still in progress.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain

import streamlit as st

from chatbot.domain import Message, ReplyEvent, ReplyEventType
from chatbot.errors import ChatbotError, OverloadedError
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.ui import banners, state
from chatbot.ui.text import StreamEscaper, safe_markdown, stats_caption

logger = logging.getLogger(__name__)

BUSY_RETRIES = 3
STOP_KEY = "chatbot.stop"
REFRESHED_KEY = "chatbot.refreshed_after_reply"


@dataclass
class _Result:
    final: ReplyEvent | None = None
    error: ChatbotError | None = None


def run_action(service: ChatServiceProtocol, conversation_id: str, action: state.Action) -> None:
    """Run what the user asked for, stream it, then rerun to show the stored result."""
    start: Callable[[], Iterator[ReplyEvent]]
    match action.kind:
        case "send":
            start = lambda: service.send_message(conversation_id, action.text)  # noqa: E731
        case "regenerate":
            start = lambda: service.regenerate(conversation_id)  # noqa: E731
        case "edit":
            message_id = action.message_id or ""
            start = lambda: service.edit_message(  # noqa: E731
                conversation_id, message_id, action.text
            )
    if action.kind != "regenerate":
        with st.chat_message("user"):
            st.markdown(safe_markdown(action.text))
    result = _stream(service, conversation_id, start)
    if result.error is not None:
        if action.kind != "regenerate":
            state.keep_draft(action.text)
        state.flash(banners.describe(result.error))
    else:
        state.keep_draft(None)
        if result.final is not None and result.final.type is ReplyEventType.ERROR:
            state.flash(state.Banner("error", f"The reply failed: {result.final.error}"))
    st.rerun()


def attach(service: ChatServiceProtocol, conversation_id: str) -> None:
    """Show a reply still in progress (after a refresh or a click); nothing when there is none."""
    try:
        events = iter(service.attach(conversation_id))
        first = next(events, None)
    except ChatbotError as exc:
        banners.show(exc)
        return
    if first is None:
        # The reply ended between loading the page and attaching to it: run the page again to
        # show it as stored (once, so a row that stays odd cannot loop the page).
        if st.session_state.get(REFRESHED_KEY) != conversation_id:
            st.session_state[REFRESHED_KEY] = conversation_id
            st.rerun()
        return
    st.session_state.pop(REFRESHED_KEY, None)
    result = _render_stream(service, conversation_id, first, events)
    if result.error is not None:
        banners.show(result.error)
        return
    st.rerun()  # the stored reply, with Edit and Regenerate back, without waiting for a click


def _stream(
    service: ChatServiceProtocol,
    conversation_id: str,
    start: Callable[[], Iterator[ReplyEvent]],
) -> _Result:
    notice = st.empty()
    for attempt in range(BUSY_RETRIES + 1):
        try:
            events = iter(start())
            first = next(events, None)  # an in-process generator raises only when read
        except OverloadedError as exc:
            if attempt == BUSY_RETRIES:
                notice.empty()
                return _Result(error=exc)
            _count_down(notice, exc.retry_after_s, attempt + 1)
            continue
        except ChatbotError as exc:
            notice.empty()
            return _Result(error=exc)
        notice.empty()
        if first is None:
            return _Result()
        return _render_stream(service, conversation_id, first, events)
    return _Result()  # unreachable: the loop returns


def _count_down(notice: st.delta_generator.DeltaGenerator, seconds: int, attempt: int) -> None:
    logger.info("backend busy; retry %d in %d s", attempt, seconds)
    for left in range(seconds, 0, -1):
        notice.warning(
            f"The model is busy, retrying in {left} s (attempt {attempt} of {BUSY_RETRIES})…",
            icon="⏳",
        )
        time.sleep(1)
    notice.empty()


def _render_stream(
    service: ChatServiceProtocol,
    conversation_id: str,
    first: ReplyEvent,
    events: Iterator[ReplyEvent],
) -> _Result:
    result = _Result()
    with st.chat_message("assistant"):
        body = st.container()
        controls = st.empty()
        controls.button(
            "Stop",
            key=STOP_KEY,
            icon=":material/stop_circle:",
            on_click=stop_reply,
            args=(service, conversation_id),
        )
        body.write_stream(_deltas(first, events, result))
        controls.empty()
        if result.final is not None and result.final.message is not None:
            _caption(result.final.message)
    return result


def _deltas(first: ReplyEvent, events: Iterator[ReplyEvent], result: _Result) -> Iterator[str]:
    escaper = StreamEscaper()
    try:
        for event in chain([first], events):
            if event.type is ReplyEventType.DELTA:
                yield escaper.feed(event.delta)
            elif event.type in (ReplyEventType.DONE, ReplyEventType.ERROR):
                result.final = event
    except ChatbotError as exc:
        result.error = exc
    finally:
        close = getattr(events, "close", None)
        if callable(close):
            close()


def _caption(message: Message) -> None:
    caption = stats_caption(message)
    if caption:
        st.caption(caption)


def stop_reply(service: ChatServiceProtocol, conversation_id: str) -> None:
    """The Stop button's callback: the model stops, the partial reply is kept."""
    try:
        service.stop(conversation_id)
    except ChatbotError as exc:
        state.flash(banners.describe(exc))
