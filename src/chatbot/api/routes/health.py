"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (it can serve traffic now).

``/health`` is ``/healthz`` under the name OpenAI-compatible tools probe (guidellm, vLLM's own).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import chatbot
from chatbot.api.deps import LimitsDep, ModelNameDep, RuntimeDep
from chatbot.api.error_handlers import error_body
from chatbot.api.openai.protocol import ErrorResponse
from chatbot.service.params import ServiceLimits
from chatbot.service.waiting import RunnerStatus

router = APIRouter(tags=["probes"])


@router.get("/healthz")
@router.get("/health")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        503: {"description": "loading, failed to start, or draining", "model": ErrorResponse}
    },
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    if runtime.drain.draining:
        return _not_ready("the server is shutting down", "draining")
    if runtime.startup_error is not None:
        return _not_ready(f"the server failed to start: {runtime.startup_error}", "startup_failed")
    if not runtime.ready.is_set():
        return _not_ready("the model is still loading", "not_ready")
    model = runtime.engine.model_id if runtime.engine is not None else None
    return JSONResponse({"status": "ready", "model": model})


def _not_ready(message: str, code: str) -> JSONResponse:
    return JSONResponse(error_body(message, "service_unavailable", None, code), status_code=503)


info_router = APIRouter(prefix="/v1", tags=["info"])


@info_router.get("/info")
async def info(model: ModelNameDep, limits: LimitsDep) -> dict[str, Any]:
    """The model, and the limits a client builds its controls from (the UI over HTTP)."""
    return {
        "model": model,
        "deployment": "microservices",
        "version": chatbot.__version__,
        "limits": asdict(ServiceLimits.of(limits)),
    }


class ServerStatus(BaseModel):
    """How busy the server is now; the UI's waiting states read it (``GET /v1/status``)."""

    model: str
    loaded: bool = Field(description="whether the model is loaded and warm")
    running: int = Field(description="replies holding a generation place")
    queued: int = Field(description="replies waiting for a place")
    max_concurrent: int = Field(description="generation places (CHATBOT_MAX_CONCURRENT_REQUESTS)")
    max_queued: int = Field(description="queue slots (CHATBOT_MAX_QUEUED_REQUESTS)")
    mean_reply_s: float | None = Field(
        description="mean seconds the last 20 replies held a place; null before the first"
    )
    estimate_s: float | None = Field(
        description="estimated seconds until a reply sent now starts generating (0 when a "
        "place is free; null before the first reply is measured)"
    )
    load_error: str | None = Field(default=None, description="why the model failed to load")


@info_router.get("/status", response_model=ServerStatus)
async def status(runtime: RuntimeDep, model: ModelNameDep) -> ServerStatus:
    """Whether the model is loaded, replies running and queued, and the wait estimate.

    Answers while the model loads (``loaded: false``), unlike the routes that need it.
    """
    if runtime.runner is not None and runtime.ready.is_set():
        now = runtime.runner.status()
    else:
        server = runtime.server
        now = RunnerStatus(
            loaded=False,
            running=0,
            queued=0,
            max_concurrent=server.max_concurrent_requests,
            max_queued=server.max_queued_requests,
            mean_reply_s=None,
            estimate_s=None,
            load_error=runtime.startup_error,
        )
    return ServerStatus(model=model, **asdict(now))
