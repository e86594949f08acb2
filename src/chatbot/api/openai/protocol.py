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


FUNCTION_NAME = r"^[A-Za-z0-9_.\-]{1,64}$"
MAX_TOOLS = 128


class FunctionCall(_Lenient):
    """A call the model made: ``arguments`` is a JSON object in a string, as OpenAI sends it."""

    name: str = Field(max_length=256)
    arguments: str = Field(default="{}", description="The arguments as a JSON string.")


class ToolCall(_Lenient):
    id: str = Field(default="", max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"] = Field(
        description="tool (and the older function) messages carry a tool's result."
    )
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCall] | None = Field(
        default=None, max_length=MAX_TOOLS, description="The calls an assistant turn made."
    )
    tool_call_id: str | None = Field(
        default=None, max_length=256, description="Which call a tool message answers."
    )
    function_call: FunctionCall | None = Field(
        default=None, description="The older single call of an assistant turn."
    )


class FunctionDefinition(_Lenient):
    name: str = Field(pattern=FUNCTION_NAME, description="Letters, digits, _ . -; 64 at most.")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None, description="A JSON schema of the arguments (an object)."
    )
    strict: bool | None = None


class ToolDefinition(_Lenient):
    type: Literal["function"] = Field(description="Only function tools exist.")
    function: FunctionDefinition


class FunctionName(_Lenient):
    name: str = Field(max_length=256)


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    function: FunctionName


class JsonSchemaFormat(_Lenient):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(default="response", max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


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
    ignore_eos: StrictBool = Field(
        default=False,
        description="vLLM's and llama-server's extension: generate to max_tokens, past the "
        "end-of-text token (for benchmarks and tests whose subject is length).",
    )
    stop: Annotated[str | list[str] | None, Field(json_schema_extra=STOP_SCHEMA)] = None
    user: str | None = Field(default=None, max_length=256)
    tools: list[ToolDefinition] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    functions: list[FunctionDefinition] | None = Field(
        default=None, max_length=MAX_TOOLS, description="The older form of tools."
    )
    function_call: Literal["none", "auto"] | FunctionName | None = None
    response_format: ResponseFormat | None = None
    # Known but unsupported: refused by name when they ask for more than the default.
    n: StrictInt | None = Field(default=None, **_only(1, None))
    logprobs: StrictBool | None = Field(default=None, **_only(False, None))
    top_logprobs: StrictInt | None = Field(default=None, **_only(None))
    frequency_penalty: StrictFloat | None = Field(default=None, **_only(0, None))
    presence_penalty: StrictFloat | None = Field(default=None, **_only(0, None))
    logit_bias: dict[str, Any] | None = Field(default=None, json_schema_extra={"maxProperties": 0})


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def _absent(value: object) -> bool:
    return value is None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = Field(default=None, exclude_if=_absent)
    function_call: FunctionCall | None = Field(default=None, exclude_if=_absent)


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


class FunctionCallDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    function_call: FunctionCallDelta | None = None


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
