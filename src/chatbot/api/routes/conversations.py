"""``/v1/conversations``: thin HTTP over the ChatService methods of the contract."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from chatbot.api.body import StrictJSONRoute
from chatbot.api.deps import RuntimeDep, ServiceDep
from chatbot.api.openai.protocol import ErrorResponse
from chatbot.api.replies import serve_reply
from chatbot.config import LimitSettings
from chatbot.domain import Conversation, ExportFormat, GenerationParams
from chatbot.errors import InvalidRequestError
from chatbot.service.local import MAX_LIST_LIMIT  # the schema states the service's bound

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 409, 413, 429, 503)
}
TITLE_MAX = 200
PROMPT_MAX = 100_000

router = APIRouter(
    prefix="/v1/conversations",
    tags=["conversations"],
    route_class=StrictJSONRoute,
    responses=ERRORS,
)


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=TITLE_MAX)
    system_prompt: str | None = Field(default=None, max_length=PROMPT_MAX)
    params: GenerationParams | None = None


class ConversationUpdate(ConversationCreate):
    pass


class SendMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str
    stream: bool = False


class Regenerate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stream: bool = False


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: ExportFormat
    content: str


class ConversationList(BaseModel):
    object: str = "list"
    data: list[dict[str, Any]]


def _check_params(params: GenerationParams | None, limits: LimitSettings) -> None:
    if params is not None and params.max_new_tokens > limits.max_tokens_cap:
        raise InvalidRequestError(
            f"params.max_new_tokens is {params.max_new_tokens} but this server allows at most "
            f"{limits.max_tokens_cap} (CHATBOT_MAX_TOKENS_CAP)",
            param="params.max_new_tokens",
            code="max_tokens_too_large",
        )


def _check_content(content: str, limits: LimitSettings) -> None:
    if len(content) > limits.max_message_chars:
        raise InvalidRequestError(
            f"content has {len(content)} characters but this server accepts at most "
            f"{limits.max_message_chars} (CHATBOT_MAX_MESSAGE_CHARS)",
            param="content",
            code="message_too_long",
        )
    if not content.strip():
        raise InvalidRequestError("content must not be empty", param="content")


def _json(conversation: Conversation) -> dict[str, Any]:
    return conversation.model_dump(mode="json")


@router.get("")
def list_conversations(
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ConversationList:
    rows = service.list_conversations(limit=limit, offset=offset)
    return ConversationList(data=[row.model_dump(mode="json") for row in rows])


@router.post("", status_code=201)
def create_conversation(
    body: ConversationCreate, service: ServiceDep, runtime: RuntimeDep
) -> dict[str, Any]:
    _check_params(body.params, runtime.limits)
    return _json(
        service.create_conversation(
            title=body.title, system_prompt=body.system_prompt, params=body.params
        )
    )


@router.post("/import", status_code=201)
def import_conversation(
    body: ImportRequest, service: ServiceDep, runtime: RuntimeDep
) -> dict[str, Any]:
    if len(body.content) > runtime.limits.max_body_bytes:
        raise InvalidRequestError("content is too large", param="content")
    return _json(service.import_conversation(body.content, body.format))


@router.get("/{conversation_id}")
def get_conversation(conversation_id: str, service: ServiceDep) -> dict[str, Any]:
    return _json(service.get_conversation(conversation_id))


@router.patch("/{conversation_id}")
def update_conversation(
    conversation_id: str, body: ConversationUpdate, service: ServiceDep, runtime: RuntimeDep
) -> dict[str, Any]:
    _check_params(body.params, runtime.limits)
    return _json(
        service.update_conversation(
            conversation_id, title=body.title, system_prompt=body.system_prompt, params=body.params
        )
    )


@router.delete("/{conversation_id}", status_code=204, response_class=Response)
def delete_conversation(conversation_id: str, service: ServiceDep) -> Response:
    service.delete_conversation(conversation_id)
    return Response(status_code=204)


@router.post("/{conversation_id}/clear")
def clear_conversation(conversation_id: str, service: ServiceDep) -> dict[str, Any]:
    return _json(service.clear_conversation(conversation_id))


@router.post("/{conversation_id}/messages")
async def send_message(
    conversation_id: str, body: SendMessage, service: ServiceDep, runtime: RuntimeDep
) -> Response:
    _check_content(body.content, runtime.limits)
    return await serve_reply(
        runtime,
        conversation_id,
        lambda: service.send_message(conversation_id, body.content),
        stream=body.stream,
    )


@router.get("/{conversation_id}/reply")
async def attach(conversation_id: str, service: ServiceDep, runtime: RuntimeDep) -> Response:
    return await serve_reply(
        runtime,
        conversation_id,
        lambda: service.attach(conversation_id),
        stream=True,
        empty_status=204,
    )


@router.post("/{conversation_id}/stop")
def stop(conversation_id: str, service: ServiceDep) -> dict[str, bool]:
    return {"stopped": service.stop(conversation_id)}


@router.post("/{conversation_id}/regenerate")
async def regenerate(
    conversation_id: str, service: ServiceDep, runtime: RuntimeDep, body: Regenerate | None = None
) -> Response:
    return await serve_reply(
        runtime,
        conversation_id,
        lambda: service.regenerate(conversation_id),
        stream=bool(body and body.stream),
    )


@router.put("/{conversation_id}/messages/{message_id}")
async def edit_message(
    conversation_id: str,
    message_id: str,
    body: SendMessage,
    service: ServiceDep,
    runtime: RuntimeDep,
) -> Response:
    _check_content(body.content, runtime.limits)
    return await serve_reply(
        runtime,
        conversation_id,
        lambda: service.edit_message(conversation_id, message_id, body.content),
        stream=body.stream,
    )


@router.get("/{conversation_id}/export")
def export_conversation(
    conversation_id: str,
    service: ServiceDep,
    fmt: Annotated[ExportFormat, Query(alias="format")] = ExportFormat.JSON,
) -> Response:
    text = service.export_conversation(conversation_id, fmt)
    safe_id = "".join(c for c in conversation_id if c.isalnum() or c in "-_")[:64] or "conversation"
    return Response(
        text,
        media_type=fmt.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="conversation-{safe_id}.{fmt.extension}"'
        },
    )
