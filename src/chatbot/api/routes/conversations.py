"""``/v1/conversations``: thin HTTP over the ChatService methods of the contract."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatbot.api.body import StrictJSONRoute
from chatbot.api.deps import LimitsDep, ServerSettingsDep, ServiceDep
from chatbot.api.streaming import serve_conversation_reply
from chatbot.domain import Conversation, ConversationSummary, ExportFormat, GenerationParams
from chatbot.errors import InvalidRequestError
from chatbot.service import cursor
from chatbot.service.local import MAX_LIST_LIMIT  # the schema states the service's bound
from chatbot.store.models import MAX_TITLE_CHARS

# Text that must say something: the service refuses an empty or blank one.
NOT_BLANK = r"\S"

router = APIRouter(
    prefix="/v1/conversations",
    tags=["conversations"],
    route_class=StrictJSONRoute,
)


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Checked by the service (one rule for every path); the schema only says so. The limits
    # that are settings (CHATBOT_MAX_MESSAGE_CHARS) are written in by chatbot.api.openapi.
    title: str | None = Field(
        default=None,
        json_schema_extra={"maxLength": MAX_TITLE_CHARS, "pattern": NOT_BLANK},
    )
    system_prompt: str | None = None
    params: GenerationParams | None = None


class ConversationUpdate(ConversationCreate):
    pass


class SendMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(json_schema_extra={"pattern": NOT_BLANK})
    stream: StrictBool = False


class Regenerate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stream: StrictBool = False


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: ExportFormat
    content: str


class ConversationList(BaseModel):
    object: str = "list"
    data: list[ConversationSummary]
    has_more: bool = Field(description="More conversations follow this page.")
    next_cursor: str | None = Field(
        description="Pass as `after` for the next page; null on the last page."
    )


REPLY: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The stored assistant message, or with stream=true an SSE stream of "
        "reply events (`data:` lines, ': ping' comments while waiting).",
        "content": {"application/json": {}, "text/event-stream": {}},
    }
}
EXPORT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The conversation as a file, in the format asked for.",
        "content": {
            # format=json: the conversation; format=openai: its list of messages
            "application/json": {"schema": {"type": ["object", "array"]}},
            "text/csv": {"schema": {"type": "string"}},
            "text/markdown": {"schema": {"type": "string"}},
        },
    }
}


class MessageList(BaseModel):
    object: str = "list"
    data: list[dict[str, Any]]


def _json(conversation: Conversation) -> dict[str, Any]:
    return conversation.model_dump(mode="json")


@router.get("")
async def list_conversations(
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    after: Annotated[
        str | None,
        Query(
            max_length=cursor.MAX_CURSOR_CHARS,
            pattern=cursor.PATTERN,
            description="`next_cursor` of the previous page: pages that neither repeat nor "
            "skip a row while conversations are added.",
        ),
    ] = None,
    offset: Annotated[
        int, Query(ge=0, le=10_000_000, description="Rows to skip (after the cursor, if any).")
    ] = 0,
) -> ConversationList:
    """Newest activity first."""
    page = await service.page_conversations(limit=limit, after=after, offset=offset)
    return ConversationList(
        data=list(page.data), has_more=page.has_more, next_cursor=page.next_cursor
    )


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


@router.api_route("/import", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def import_other_methods() -> None:
    """``import`` is a literal segment, not a conversation id: 405, not "no conversation"."""
    raise StarletteHTTPException(405)


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


@router.post("/{conversation_id}/messages", responses=REPLY)
async def send_message(
    conversation_id: str, body: SendMessage, service: ServiceDep, server: ServerSettingsDep
) -> Response:
    events = await service.send_message(conversation_id, body.content)
    return await serve_conversation_reply(
        events, stream=body.stream, heartbeat_s=server.heartbeat_s
    )


@router.get(
    "/{conversation_id}/reply",
    responses={
        200: {
            "description": "The reply in progress as an SSE stream of reply events.",
            "content": {"text/event-stream": {}},
        },
        204: {"description": "No reply is in progress."},
    },
)
async def attach(conversation_id: str, service: ServiceDep, server: ServerSettingsDep) -> Response:
    events = await service.attach(conversation_id)
    if events is None:
        return Response(status_code=204)
    return await serve_conversation_reply(events, stream=True, heartbeat_s=server.heartbeat_s)


@router.post("/{conversation_id}/stop")
async def stop(conversation_id: str, service: ServiceDep) -> dict[str, bool]:
    return {"stopped": await service.stop(conversation_id)}


@router.post("/{conversation_id}/regenerate", responses=REPLY)
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


@router.put("/{conversation_id}/messages/{message_id}", responses=REPLY)
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


@router.get("/{conversation_id}/export", response_class=Response, responses=EXPORT)
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
