"""Request and response types of the OpenAI chat API, the subset this server implements.

Unknown fields are ignored, like OpenAI does; fields we know but cannot honour are declared so
the serving layer can refuse them by name instead of ignoring them silently. Their schema says
what is accepted (``n`` at most 1, no logprobs), so the OpenAPI document tells no lies.

Numbers and booleans are strict: ``"8"`` or ``true`` for ``max_tokens`` is a 400, not an 8 or
a 1 (a float field still takes an integer, as JSON does not tell ``1`` from ``1.0``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from chatbot.domain.messages import MAX_JSON_INT, MAX_STOP_CHARS, MAX_STOP_SEQUENCES

MAX_SEED = MAX_JSON_INT

_STOP_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}
# Stop sequences: one non-empty string or a short list of them; the domain checks the same.
STOP_SCHEMA: dict[str, Any] = {
    "anyOf": [
        _STOP_TEXT,
        {"type": "array", "items": _STOP_TEXT, "maxItems": MAX_STOP_SEQUENCES},
        {"type": "null"},
    ]
}


def _only(*values: Any) -> dict[str, Any]:
    """The schema of a parameter we refuse unless it asks for the default."""
    return {"json_schema_extra": {"enum": list(values)}}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    model_config = ConfigDict(json_schema_extra={"required": ["type", "text"]})

    type: str = Field(max_length=64, json_schema_extra={"enum": ["text"]})
    text: str | None = Field(default=None, json_schema_extra={"type": "string"})


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="tool and function messages are not supported."
    )
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)


class StreamOptions(_Lenient):
    include_usage: StrictBool = False


class ChatCompletionRequest(_Lenient):
    model: str | None = Field(
        default=None,
        max_length=4096,
        description=(
            "The served model's id (GET /v1/models) or one of CHATBOT_MODEL_ALIASES; "
            "omitted means the served model; any other name is a 404 model_not_found."
        ),
    )
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(
        default=None, ge=1, description="At most CHATBOT_MAX_TOKENS_CAP."
    )
    max_completion_tokens: StrictInt | None = Field(
        default=None, ge=1, description="At most CHATBOT_MAX_TOKENS_CAP."
    )
    temperature: StrictFloat | None = Field(default=None, ge=0.0, le=2.0)
    top_p: StrictFloat | None = Field(default=None, gt=0.0, le=1.0)
    seed: StrictInt | None = Field(default=None, ge=0, le=MAX_SEED)
    stop: Annotated[str | list[str] | None, Field(json_schema_extra=STOP_SCHEMA)] = None
    user: str | None = Field(default=None, max_length=256)
    # Known but unsupported: refused by name when they ask for more than the default.
    n: StrictInt | None = Field(default=None, **_only(1, None))
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    logprobs: StrictBool | None = Field(default=None, **_only(False, None))
    top_logprobs: StrictInt | None = Field(default=None, **_only(None))
    response_format: dict[str, Any] | None = None
    frequency_penalty: StrictFloat | None = Field(default=None, **_only(0, None))
    presence_penalty: StrictFloat | None = Field(default=None, **_only(0, None))
    logit_bias: dict[str, Any] | None = Field(default=None, json_schema_extra={"maxProperties": 0})


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageInfo
    system_fingerprint: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageInfo | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "chatbot"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
