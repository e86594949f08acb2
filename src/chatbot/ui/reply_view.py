"""A reply on screen: why it waits, then streamed token by token, with a Stop button.

The reply belongs to the service, not to this script run. A click anywhere reruns the script
and interrupts the stream here, while the model goes on; Stop therefore calls
``service.stop`` in its callback, and any later run re-attaches to a reply still in progress.

Before its first token a reply may wait (the model loads, the queue is full, a long prompt is
read): the service says so in ``waiting`` events, shown in the reply's bubble. A server with
no free queue slot refuses (429): the message is sent again by itself after the server's
``Retry-After``, with a countdown and a Cancel button, for up to :data:`BUSY_GIVE_UP_S`.
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
from chatbot.ui.waiting import wait_text

logger = logging.getLogger(__name__)

BUSY_GIVE_UP_S = 600.0
STOP_KEY = "chatbot.stop"
CANCEL_KEY = "chatbot.cancel_retry"
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
    result = _stream(service, conversation_id, start, action)
    if result.error is not None:
        if action.kind != "regenerate":
            state.keep_draft(action.text)
        state.flash(banners.describe(result.error, place="composer"))
    else:
        state.keep_draft(None)
        if result.final is not None and result.final.type is ReplyEventType.ERROR:
            state.flash(
                state.Banner(
                    "error",
                    "The reply failed; its text so far is kept. Regenerate to try again.",
                    place="composer",
                    details=f"{result.final.error_code}: {result.final.error}",
                )
            )
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
    action: state.Action,
) -> _Result:
    notice = st.empty()
    give_up = time.monotonic() + BUSY_GIVE_UP_S
    attempt = 0
    countdown: st.delta_generator.DeltaGenerator | None = None
    while True:
        try:
            events = iter(start())
            first = next(events, None)  # an in-process generator raises only when read
        except OverloadedError as exc:
            attempt += 1
            if time.monotonic() + exc.retry_after_s > give_up:
                notice.empty()
                return _Result(error=exc)
            if countdown is None:
                countdown = _busy_notice(notice, action)
            _count_down(countdown, exc.retry_after_s, attempt)
            continue
        except ChatbotError as exc:
            notice.empty()
            return _Result(error=exc)
        notice.empty()
        if first is None:
            return _Result()
        return _render_stream(service, conversation_id, first, events)


def _busy_notice(
    notice: st.delta_generator.DeltaGenerator, action: state.Action
) -> st.delta_generator.DeltaGenerator:
    """The countdown's place and, once, its Cancel button (the message goes back to the box)."""
    with notice.container():
        countdown = st.empty()
        st.button(
            "Cancel",
            key=CANCEL_KEY,
            icon=":material/close:",
            on_click=_cancel_retry,
            args=(action.text if action.kind != "regenerate" else "",),
        )
    return countdown


def _cancel_retry(text: str) -> None:
    """Cancel's callback: the click ends this run (and the retries); the text is kept."""
    state.keep_draft(text or None)


def _count_down(countdown: st.delta_generator.DeltaGenerator, seconds: int, attempt: int) -> None:
    logger.info("backend busy; attempt %d again in %d s", attempt + 1, seconds)
    for left in range(max(1, seconds), 0, -1):
        countdown.warning(
            f"The model is busy with other messages. Sending again in {left} s "
            f"(tried {attempt} {'time' if attempt == 1 else 'times'})…",
            icon="⏳",
        )
        time.sleep(1)
    countdown.info("Sending again…", icon="⏳")


def _render_stream(
    service: ChatServiceProtocol,
    conversation_id: str,
    first: ReplyEvent,
    events: Iterator[ReplyEvent],
) -> _Result:
    result = _Result()
    with st.chat_message("assistant"):
        waiting = st.empty()
        body = st.container()
        controls = st.empty()
        controls.button(
            "Stop",
            key=STOP_KEY,
            icon=":material/stop_circle:",
            on_click=stop_reply,
            args=(service, conversation_id),
        )
        body.write_stream(_deltas(first, events, result, waiting))
        waiting.empty()
        controls.empty()
        if result.final is not None and result.final.message is not None:
            _caption(result.final.message)
    return result


def _deltas(
    first: ReplyEvent,
    events: Iterator[ReplyEvent],
    result: _Result,
    waiting: st.delta_generator.DeltaGenerator,
) -> Iterator[str]:
    escaper = StreamEscaper()
    waited = False
    try:
        for event in chain([first], events):
            if event.type is ReplyEventType.WAITING:
                waited = True
                waiting.info(wait_text(event), icon="⏳")
            elif event.type is ReplyEventType.DELTA:
                if waited:
                    waited = False
                    waiting.empty()
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
