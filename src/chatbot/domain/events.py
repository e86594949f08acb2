"""What a client sees while a reply is produced: start, waiting, text deltas, done or error."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from chatbot.domain.messages import Message


class ReplyEventType(StrEnum):
    START = "start"
    DELTA = "delta"
    DONE = "done"
    ERROR = "error"
    # Before the first text, only when the reply really waits (see WaitPhase); any number.
    WAITING = "waiting"


class WaitPhase(StrEnum):
    """Why a reply has no text yet: what the UI says while it waits."""

    LOADING = "loading"  # the model is still loading
    QUEUED = "queued"  # every generation place is taken; the reply waits its turn
    READING = "reading"  # the model reads a long prompt before its first token


class ReplyEvent(BaseModel):
    """One event of a reply stream; the same shape in process and as SSE ``data:`` JSON.

    ``start`` carries the stored user message (when there is one) and the assistant message
    placeholder with its id; ``delta`` a piece of text; ``done`` the final assistant message
    with its status and stats; ``error`` a message for people and the final assistant message
    (status ``error``, partial text kept) when there is one.
    """

    model_config = ConfigDict(frozen=True)

    type: ReplyEventType
    conversation_id: str
    delta: str = ""
    message: Message | None = None
    user_message: Message | None = None
    error: str | None = None
    error_code: str | None = None
    # The OpenAI error object ({message, type, param, code}) of an ``error`` event, so a client
    # rebuilds the same error class through chatbot.errors' table instead of parsing text.
    error_body: dict[str, Any] | None = None
    error_status: int | None = None
    retry_after_s: int | None = None
    # ``waiting`` events: why, the place in the queue (1 = next), an estimate of the seconds
    # until generation starts (None until the server has measured a reply), prompt tokens.
    phase: WaitPhase | None = None
    queue_position: int | None = None
    eta_s: float | None = None
    prompt_tokens: int | None = None


class ConversationSummary(BaseModel):
    """A row of the conversation list: no messages."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    message_count: int = 0


class ConversationPage(BaseModel):
    """One page of the conversation list, and where the next one starts."""

    model_config = ConfigDict(frozen=True)

    data: tuple[ConversationSummary, ...]
    has_more: bool = False
    next_cursor: str | None = None
