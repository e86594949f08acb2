"""HTTP only: ``/v1/models`` and ``/v1/chat/completions``; the logic is in :mod:`.serving`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from chatbot.api.body import StrictJSONRoute
from chatbot.api.deps import LimitsDep, RunnerDep, RuntimeDep, ServedModelsDep
from chatbot.api.openai import serving
from chatbot.api.openai.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    ModelCard,
    ModelList,
)
from chatbot.errors import ContextOverflowError

router = APIRouter(prefix="/v1", tags=["openai"], route_class=StrictJSONRoute)


@router.get("/models", response_model=ModelList)
async def list_models(models: ServedModelsDep) -> ModelList:
    return models.cards()


@router.get("/models/{model_id:path}", response_model=ModelCard)
async def get_model(model_id: str, models: ServedModelsDep) -> ModelCard:
    return models.card(model_id)


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
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
    models: ServedModelsDep,
    runtime: RuntimeDep,
) -> Response:
    model = models.resolve(body.model)
    try:
        return await serving.create_chat_completion(
            body, request, runner, limits, model, runtime.server.heartbeat_s
        )
    except ContextOverflowError as exc:  # OpenAI's sentence: clients' fallbacks look for it
        raise exc.in_openai_words() from None
