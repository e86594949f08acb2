"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (it can serve traffic now).

``/health`` is ``/healthz`` under the name OpenAI-compatible tools probe (guidellm, vLLM's own).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

import chatbot
from chatbot.api.deps import LimitsDep, ModelNameDep, RuntimeDep
from chatbot.api.error_handlers import error_body
from chatbot.api.openai.protocol import ErrorResponse
from chatbot.service.params import ServiceLimits

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
