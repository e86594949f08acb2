"""``/v1/conversations``: thin HTTP over the ChatService methods of the contract."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict

from chatbot.api.body import StrictJSONRoute
from chatbot.api.deps import LimitsDep, ServerSettingsDep, ServiceDep
from chatbot.api.openai.protocol import ErrorResponse
from chatbot.api.streaming import serve_conversation_reply
from chatbot.domain import Conversation, ExportFormat, GenerationParams
from chatbot.errors import InvalidRequestError
from chatbot.service.local import MAX_LIST_LIMIT  # the schema states the service's bound

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 409, 413, 429, 503)
}

router = APIRouter(
    prefix="/v1/conversations",
    tags=["conversations"],
    route_class=StrictJSONRoute,
    responses=ERRORS,
)


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Lengths are checked by the service (one rule for every path), not here.
    title: str | None = None
    system_prompt: str | None = None
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


class MessageList(BaseModel):
    object: str = "list"
    data: list[dict[str, Any]]


def _json(conversation: Conversation) -> dict[str, Any]:
    return conversation.model_dump(mode="json")


@router.get("")
async def list_conversations(
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ConversationList:
    rows = await service.list_conversations(limit=limit, offset=offset)
    return ConversationList(data=[row.model_dump(mode="json") for row in rows])


@router.post("", status_code=201)
async def create_conversation(body: ConversationCreate, service: ServiceDep) -> dict[str, Any]:
    return _json(
        await service.create_conversation(
            title=body.title, system_prompt=body.system_prompt, params=body.params
        )
    )


@router.post("/import", status_code=201)
async def import_conversation(
    body: ImportRequest, service: ServiceDep, limits: LimitsDep
) -> dict[str, Any]:
    if len(body.content) > limits.max_body_bytes:
        raise InvalidRequestError("content is too large", param="content")
    return _json(await service.import_conversation(body.content, body.format))


@router.get("/{conversation_id}")
async def get_conversation(conversation_id: str, service: ServiceDep) -> dict[str, Any]:
    return _json(await service.get_conversation(conversation_id))


@router.patch("/{conversation_id}")
async def update_conversation(
    conversation_id: str, body: ConversationUpdate, service: ServiceDep
) -> dict[str, Any]:
    return _json(
        await service.update_conversation(
            conversation_id, title=body.title, system_prompt=body.system_prompt, params=body.params
        )
    )


@router.delete("/{conversation_id}", status_code=204, response_class=Response)
async def delete_conversation(conversation_id: str, service: ServiceDep) -> Response:
    await service.delete_conversation(conversation_id)
    return Response(status_code=204)


@router.post("/{conversation_id}/clear")
async def clear_conversation(conversation_id: str, service: ServiceDep) -> dict[str, Any]:
    return _json(await service.clear_conversation(conversation_id))


@router.post("/{conversation_id}/messages")
async def send_message(
    conversation_id: str, body: SendMessage, service: ServiceDep, server: ServerSettingsDep
) -> Response:
    events = await service.send_message(conversation_id, body.content)
    return await serve_conversation_reply(
        events, stream=body.stream, heartbeat_s=server.heartbeat_s
    )


@router.get("/{conversation_id}/reply")
async def attach(conversation_id: str, service: ServiceDep, server: ServerSettingsDep) -> Response:
    events = await service.attach(conversation_id)
    if events is None:
        return Response(status_code=204)
    return await serve_conversation_reply(events, stream=True, heartbeat_s=server.heartbeat_s)


@router.post("/{conversation_id}/stop")
async def stop(conversation_id: str, service: ServiceDep) -> dict[str, bool]:
    return {"stopped": await service.stop(conversation_id)}


@router.post("/{conversation_id}/regenerate")
async def regenerate(
    conversation_id: str,
    service: ServiceDep,
    server: ServerSettingsDep,
    body: Regenerate | None = None,
) -> Response:
    events = await service.regenerate(conversation_id)
    return await serve_conversation_reply(
        events, stream=bool(body and body.stream), heartbeat_s=server.heartbeat_s
    )


@router.put("/{conversation_id}/messages/{message_id}")
async def edit_message(
    conversation_id: str,
    message_id: str,
    body: SendMessage,
    service: ServiceDep,
    server: ServerSettingsDep,
) -> Response:
    events = await service.edit_message(conversation_id, message_id, body.content)
    return await serve_conversation_reply(
        events, stream=body.stream, heartbeat_s=server.heartbeat_s
    )


@router.get("/{conversation_id}/messages")
async def list_messages(conversation_id: str, service: ServiceDep) -> MessageList:
    """Every message of every branch, oldest first; ``parent_id`` links them into the tree."""
    messages = await service.all_messages(conversation_id)
    return MessageList(data=[m.model_dump(mode="json") for m in messages])


@router.post("/{conversation_id}/messages/{message_id}/select")
async def select_version(
    conversation_id: str, message_id: str, service: ServiceDep
) -> dict[str, Any]:
    """Show the branch through this message (one of a message's ``sibling_ids``)."""
    return _json(await service.select_version(conversation_id, message_id))


@router.get("/{conversation_id}/export")
async def export_conversation(
    conversation_id: str,
    service: ServiceDep,
    fmt: Annotated[ExportFormat, Query(alias="format")] = ExportFormat.JSON,
) -> Response:
    text = await service.export_conversation(conversation_id, fmt)
    safe_id = "".join(c for c in conversation_id if c.isalnum() or c in "-_")[:64] or "conversation"
    return Response(
        text,
        media_type=fmt.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="conversation-{safe_id}.{fmt.extension}"'
        },
    )
