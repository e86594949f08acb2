"""HTTP only: ``/v1/models`` and ``/v1/chat/completions``; the logic is in :mod:`.serving`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from chatbot.api.body import StrictJSONRoute
from chatbot.api.deps import LimitsDep, ModelNameDep, RunnerDep, RuntimeDep
from chatbot.api.openai import serving
from chatbot.api.openai.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    ErrorResponse,
    ModelCard,
    ModelList,
)
from chatbot.errors import NotFoundError

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 413, 429, 503)
}

router = APIRouter(prefix="/v1", tags=["openai"], route_class=StrictJSONRoute)


@router.get("/models", response_model=ModelList, responses=ERRORS)
async def list_models(model: ModelNameDep, runtime: RuntimeDep) -> ModelList:
    return serving.list_models(model, runtime.started_at)


@router.get("/models/{model_id:path}", response_model=ModelCard, responses=ERRORS)
async def get_model(model_id: str, model: ModelNameDep, runtime: RuntimeDep) -> ModelCard:
    for card in serving.list_models(model, runtime.started_at).data:
        if card.id == model_id:
            return card
    raise NotFoundError(f"no model {model_id!r}; see GET /v1/models", param="model")


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        **ERRORS,
        200: {
            "description": "A chat completion, or with stream=true an SSE stream of chunks.",
            "content": {"text/event-stream": {}},
        },
    },
)
async def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    runner: RunnerDep,
    limits: LimitsDep,
    model: ModelNameDep,
    runtime: RuntimeDep,
) -> Response:
    return await serving.create_chat_completion(
        body, request, runner, limits, model, runtime.server.heartbeat_s
    )
