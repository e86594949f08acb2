"""FastAPI dependencies: each route gets the part of the app it uses, through ``app.state``.

They are ``async def`` although they do not wait for anything: FastAPI runs plain ``def``
dependencies in its thread pool, which grew the process by a thread per concurrent request
(measured: 20 threads idle, 31 with 16 streams; the same 20 with async dependencies).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from chatbot.api.openai.models import ServedModels
from chatbot.api.runtime import Runtime
from chatbot.config import LimitSettings, ServerSettings
from chatbot.domain.users import LOCAL_USER, User
from chatbot.errors import UnavailableError
from chatbot.service.local import ChatService
from chatbot.service.metrics import Metrics
from chatbot.service.runner import ReplyRunner


async def get_runtime(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _not_ready() -> UnavailableError:
    return UnavailableError("the model is still loading; retry shortly", code="not_ready")


async def get_current_user(request: Request) -> User:
    """The user the authentication middleware put on the request; the local user without one."""
    user = request.scope.get("state", {}).get("user")
    return user if isinstance(user, User) else LOCAL_USER


CurrentUserDep = Annotated[User, Depends(get_current_user)]


async def get_service(runtime: RuntimeDep, user: CurrentUserDep) -> ChatService:
    """The service acting for the request's user: routes never see another user's data.

    This is the only way a route reaches the service (``runtime.service`` is not for routes).
    """
    if runtime.service is None or not runtime.ready.is_set():
        raise _not_ready()
    return runtime.service.for_user(user)


async def get_runner(runtime: RuntimeDep) -> ReplyRunner:
    if runtime.runner is None or not runtime.ready.is_set():
        raise _not_ready()
    return runtime.runner


async def get_limits(runtime: RuntimeDep) -> LimitSettings:
    return runtime.limits


async def get_server_settings(runtime: RuntimeDep) -> ServerSettings:
    return runtime.server


async def get_metrics(runtime: RuntimeDep) -> Metrics:
    return runtime.metrics


async def get_model_name(runtime: RuntimeDep) -> str:
    if runtime.engine is not None:
        return runtime.engine.model_id
    return runtime.engine_settings.model


async def get_served_models(runtime: RuntimeDep) -> ServedModels:
    return ServedModels(
        await get_model_name(runtime), runtime.server.model_aliases, runtime.model_created
    )


ServiceDep = Annotated[ChatService, Depends(get_service)]
RunnerDep = Annotated[ReplyRunner, Depends(get_runner)]
LimitsDep = Annotated[LimitSettings, Depends(get_limits)]
ServerSettingsDep = Annotated[ServerSettings, Depends(get_server_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ModelNameDep = Annotated[str, Depends(get_model_name)]
ServedModelsDep = Annotated[ServedModels, Depends(get_served_models)]
