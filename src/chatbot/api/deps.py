"""FastAPI dependencies: the app's parts, reached through ``request.app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from chatbot.api.state import Runtime
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.errors import UnavailableError


def get_runtime(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


def get_service(runtime: Annotated[Runtime, Depends(get_runtime)]) -> ChatServiceProtocol:
    if runtime.service is None or not runtime.ready.is_set():
        raise UnavailableError("the service is still starting; retry shortly", code="not_ready")
    return runtime.service


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ServiceDep = Annotated[ChatServiceProtocol, Depends(get_service)]
