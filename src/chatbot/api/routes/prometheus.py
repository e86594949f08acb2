"""``/metrics`` in the Prometheus text format, from this app's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Response

from chatbot.api.deps import MetricsDep
from chatbot.service.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text format.", "content": {"text/plain": {}}},
    },
)
async def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE)
