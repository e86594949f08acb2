"""Plain typed data shared by every layer: messages, conversations, generation parameters."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    computed_field,
    field_validator,
)

MAX_STOP_SEQUENCES = 4
# The largest integer every JSON reader keeps exactly (JavaScript's Number.MAX_SAFE_INTEGER):
# a seed above it would be a different number once it crossed a client or a schema validator.
MAX_JSON_INT = 2**53 - 1
MAX_STOP_CHARS = 200


def utc_now() -> datetime:
    return datetime.now(UTC)


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class MessageStatus(StrEnum):
    """Lifecycle of a stored message; user messages are always ``complete``."""

    COMPLETE = "complete"
    STREAMING = "streaming"
    STOPPED = "stopped"
    ERROR = "error"
    INTERRUPTED = "interrupted"


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"
    ERROR = "error"


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ReplyStats(BaseModel):
    """What the UI shows under a reply."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token_s: float | None = None
    duration_s: float | None = None
    dropped_messages: int = 0
    finish_reason: FinishReason | None = None
    queued_s: float | None = Field(
        default=None, description="Seconds waiting for a place before the model started."
    )
    loading_s: float | None = Field(
        default=None, description="Seconds waiting for the model to load, before any queue."
    )

    @property
    def generation_s(self) -> float | None:
        """Seconds the model worked on the reply: waits for the model or a place are not speed."""
        if not self.duration_s:
            return None
        waited = (self.loading_s or 0.0) + (self.queued_s or 0.0)
        return max(self.duration_s - waited, 0.0) or None

    @property
    def tokens_per_second(self) -> float | None:
        seconds = self.generation_s
        if not seconds or self.completion_tokens < 1:
            return None
        return self.completion_tokens / seconds


class Message(BaseModel):
    """One turn. ``id`` and timestamps are set by the store; plain messages leave them empty.

    Stored messages form a tree: ``parent_id`` is the message this one follows, and
    ``sibling_ids`` are every version at this place (a regenerated reply, an edited user
    message), oldest first, this one included. ``version`` and ``versions`` say "2 of 3".
    """

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str
    status: MessageStatus = MessageStatus.COMPLETE
    id: str | None = None
    created_at: datetime | None = None
    stats: ReplyStats | None = None
    parent_id: str | None = None
    sibling_ids: tuple[str, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def version(self) -> int:
        """1-based place of this message among its versions."""
        if self.id is None or self.id not in self.sibling_ids:
            return 1
        return self.sibling_ids.index(self.id) + 1

    @computed_field  # type: ignore[prop-decorator]
    @property
    def versions(self) -> int:
        return max(len(self.sibling_ids), 1)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role=Role.USER, content=content)

    @classmethod
    def assistant(cls, content: str) -> Message:
        return cls(role=Role.ASSISTANT, content=content)

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role=Role.SYSTEM, content=content)


class GenerationParams(BaseModel):
    """How to sample a reply. Bounds here are the hard ones; a server may cap further."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Strict numbers: "8" or true is refused, not read as 8 or 1 (an int is a float, though).
    max_new_tokens: StrictInt = Field(default=256, ge=1, le=131_072)
    temperature: StrictFloat = Field(default=0.0, ge=0.0, le=2.0, description="0 means greedy.")
    top_p: StrictFloat = Field(default=1.0, gt=0.0, le=1.0)
    stop: tuple[str, ...] = Field(
        default=(),
        max_length=MAX_STOP_SEQUENCES,
        json_schema_extra={
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}
        },
    )
    seed: StrictInt | None = Field(default=None, ge=0, le=MAX_JSON_INT)
    ignore_eos: StrictBool = Field(
        default=False,
        description=(
            "Generate on past the end-of-text token, to max_new_tokens (vLLM's and "
            "llama-server's ignore_eos): for benchmarks and tests whose subject is length. "
            "A JSON schema still ends the reply where the schema ends."
        ),
    )

    @field_validator("stop")
    @classmethod
    def _stop_sequences_are_usable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not item:
                raise ValueError("stop sequences must not be empty")
            if len(item) > MAX_STOP_CHARS:
                raise ValueError(f"stop sequences must be at most {MAX_STOP_CHARS} characters")
        return value

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class Conversation(BaseModel):
    """A titled list of messages with its own system prompt and parameters."""

    model_config = ConfigDict(frozen=True)

    id: str | None = None
    title: str = "New conversation"
    system_prompt: str | None = None
    params: GenerationParams = Field(default_factory=GenerationParams)
    messages: tuple[Message, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def prompt_messages(self) -> list[Message]:
        """What the model sees: the system prompt first, then the turns (failed replies out)."""
        out = [Message.system(self.system_prompt)] if self.system_prompt else []
        out.extend(m for m in self.messages if m.role is not Role.SYSTEM and m.content)
        return out
