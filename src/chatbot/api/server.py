"""``chatbot serve``: uvicorn on the app, with a drain on SIGTERM before uvicorn's own shutdown.

Uvicorn alone stops listening at once on SIGTERM and re-raises the signal at the end (exit code
-15). Here the first SIGTERM/SIGINT starts a drain instead: ``/readyz`` turns 503 so the load
balancer stops sending, new requests get 503, requests in flight get ``shutdown_grace_s`` to
finish; then streams still open end with an error event and uvicorn shuts down; exit code 0.
A second signal skips the wait.
"""

from __future__ import annotations

import logging
import time
from types import FrameType

import uvicorn

from chatbot.api.app import create_app
from chatbot.api.connections import head_timeout_protocol, install_access_log_redaction
from chatbot.api.runtime import Runtime
from chatbot.config import (
    AuthSettings,
    EngineSettings,
    LimitSettings,
    ServerSettings,
    StoreSettings,
)

logger = logging.getLogger(__name__)

# After the grace period, streams get this long to send their error event.
_ABORT_WAIT_S = 2.0


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose exit signal drains the app first."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime
        self._signals = 0
        self._aborted_at: float | None = None
        self.exit_code = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info(
                "signal %d: draining (grace %.0f s)", sig, self.runtime.server.shutdown_grace_s
            )
            self.runtime.drain.begin()
            return
        logger.info("signal %d again: shutting down now", sig)
        self.runtime.drain.abort()
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        if self.runtime.startup_error is not None:
            logger.error("exiting: the server could not start")
            self.exit_code = 1
            return True
        drain = self.runtime.drain
        if not drain.draining or drain.started_at is None:
            return False
        now = time.monotonic()
        if self.runtime.active.count == 0:
            return True
        if not drain.aborted and now - drain.started_at >= self.runtime.server.shutdown_grace_s:
            logger.warning(
                "grace period over: ending %d request(s) in flight", self.runtime.active.count
            )
            drain.abort()
            self._aborted_at = now
        return self._aborted_at is not None and now - self._aborted_at >= _ABORT_WAIT_S


def run_server(
    server: ServerSettings,
    engine: EngineSettings,
    store: StoreSettings,
    limits: LimitSettings,
    auth: AuthSettings | None = None,
) -> int:
    """Serve until a signal; 0 after a clean drain, 1 when the model or store failed to start."""
    app = create_app(server, engine, store, limits, auth=auth)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    config = uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        log_config=None,  # keep the logging the CLI configured
        log_level=str(level).lower(),
        timeout_graceful_shutdown=max(1, int(_ABORT_WAIT_S) + 1),
        proxy_headers=False,
        server_header=False,
        http=head_timeout_protocol(server.header_timeout_s),
        timeout_keep_alive=server.keep_alive_timeout_s,
    )
    install_access_log_redaction()
    runner = DrainingServer(config, app.state.runtime)
    runner.run()
    return runner.exit_code
