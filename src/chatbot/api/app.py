"""The app factory: settings in, a FastAPI app out; the lifespan loads the model and the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

import chatbot
from chatbot.api import openapi
from chatbot.api.auth import AuthMiddleware, build_authenticator
from chatbot.api.error_handlers import install_handlers
from chatbot.api.middleware import (
    BodyLimitMiddleware,
    DrainMiddleware,
    MetricsMiddleware,
)
from chatbot.api.openai.router import router as openai_router
from chatbot.api.routes import conversations, health, prometheus, seed
from chatbot.api.runtime import Runtime
from chatbot.config import (
    AuthSettings,
    EngineSettings,
    LimitSettings,
    ServerSettings,
    StoreSettings,
    load,
)
from chatbot.engine import Engine, create_engine, warm_up
from chatbot.errors import ChatbotError, ConfigurationError
from chatbot.service.admission import AdmissionControl
from chatbot.service.local import ChatService
from chatbot.service.metrics import Metrics
from chatbot.service.runner import ReplyLimits, ReplyRunner, StopReason
from chatbot.store.api_keys import ApiKeyStore

logger = logging.getLogger(__name__)


def create_app(
    server: ServerSettings,
    engine_settings: EngineSettings,
    store_settings: StoreSettings,
    limits: LimitSettings,
    *,
    engine: Engine | None = None,
    auth: AuthSettings | None = None,
) -> FastAPI:
    """Build the backend. Pass a loaded ``engine`` to share it, as tests do.

    ``auth`` defaults to the environment's (``CHATBOT_AUTH`` and its settings).
    """
    _check_cors(server.cors_origins)
    auth = auth or load(AuthSettings)
    admission = AdmissionControl(
        server.max_concurrent_requests, server.max_queued_requests, server.queue_timeout_s
    )
    runtime = Runtime(
        server=server,
        engine_settings=engine_settings,
        store_settings=store_settings,
        limits=limits,
        metrics=Metrics(),
        engine=engine,
        owns_engine=engine is None,
    )
    runtime.metrics.watch(
        lambda: admission.in_flight,
        lambda: admission.queued,
        lambda: 1.0 if runtime.ready.is_set() else 0.0,
        lambda: runtime.active.count,
    )
    app = FastAPI(
        title="chatbot backend",
        version=chatbot.__version__,
        description="The seed's API, an OpenAI-compatible API and the conversations API.",
        lifespan=lambda app: _lifespan(app, admission),
    )
    app.state.runtime = runtime
    for router in (
        seed.router,
        health.router,
        health.info_router,
        prometheus.router,
        openai_router,
        conversations.router,
    ):
        app.include_router(router)
    install_handlers(app)
    authenticator = build_authenticator(server, auth, lambda: runtime.api_keys)
    openapi.install(app, server, limits, auth)
    # Added innermost first: the last one added is the outermost.
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=limits.max_body_bytes, timeout_s=server.body_timeout_s
    )
    app.add_middleware(AuthMiddleware, authenticator=authenticator)
    app.add_middleware(DrainMiddleware, runtime=runtime)
    app.add_middleware(MetricsMiddleware, runtime=runtime, routes=lambda: list(app.routes))
    if server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(server.cors_origins),
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-Chatbot-User",
                "X-Chatbot-User-Name",
            ],
        )
    return app


def _check_cors(origins: list[str]) -> None:
    if any(origin.strip() == "*" for origin in origins):
        raise ConfigurationError(
            "CHATBOT_CORS_ORIGINS: '*' is not allowed (credentials are sent); list the origins"
        )


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI, admission: AdmissionControl) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    if runtime.engine is not None:
        # An engine was handed in (tests, embedding): be ready before the first request.
        await _start(runtime, admission)
        background = None
    else:
        # Serve the probes while the model loads: /healthz 200, /readyz 503 until ready.
        background = asyncio.create_task(_start_in_background(runtime, admission))
    try:
        yield
    finally:
        runtime.ready.clear()
        runtime.drain.begin()
        if background is not None and not background.done():
            background.cancel()
            with contextlib.suppress(BaseException):
                await background
        await _close(runtime)


async def _start(runtime: Runtime, admission: AdmissionControl) -> None:
    try:
        if runtime.engine is None:
            runtime.engine = create_engine(runtime.engine_settings)
        engine = runtime.engine
        await asyncio.to_thread(engine.load)
        if runtime.server.warmup:
            await warm_up(engine)
        runner = ReplyRunner(
            engine,
            admission,
            runtime.metrics,
            ReplyLimits(
                queue_timeout_s=runtime.server.queue_timeout_s,
                request_timeout_s=runtime.server.request_timeout_s,
            ),
        )
        runtime.drain.on_abort.append(lambda: runner.stop_all(StopReason.SHUTDOWN))
        runtime.runner = runner
        runtime.service = await asyncio.to_thread(
            ChatService.open,
            runtime.engine_settings,
            runtime.store_settings,
            runtime.limits,
            engine=engine,
            runner=runner,
        )
        # The service ran the migrations: the key table is there.
        runtime.api_keys = await asyncio.to_thread(
            ApiKeyStore.open,
            runtime.store_settings.resolved_database_url(),
            migrate_schema=False,
        )
    except ChatbotError as exc:
        runtime.startup_error = exc.message
        logger.error("startup failed: %s", exc.message)
        raise
    except Exception as exc:
        runtime.startup_error = type(exc).__name__
        logger.exception("startup failed")
        raise
    runtime.ready.set()
    logger.info("ready: model %s", engine.model_id)


async def _start_in_background(runtime: Runtime, admission: AdmissionControl) -> None:
    # The failure is recorded on the runtime (readyz says it; the server exits).
    with contextlib.suppress(Exception):
        await _start(runtime, admission)


async def _close(runtime: Runtime) -> None:
    if runtime.api_keys is not None:
        await asyncio.to_thread(runtime.api_keys.close)
        runtime.api_keys = None
    if runtime.service is not None:
        await runtime.service.close()
    if runtime.runner is not None:
        await runtime.runner.close()
    if runtime.owns_engine and runtime.engine is not None:
        await asyncio.to_thread(runtime.engine.close)
