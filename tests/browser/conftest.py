"""A real Chromium (Debian's) driven by Playwright, and ``chatbot ui`` as a real subprocess."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import httpx
import pytest

from tests.fixtures.process_logs import new_log_path
from tests.fixtures.servers import ROOT, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHATBOT = Path(sys.executable).parent / "chatbot"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
START_TIMEOUT_S = 120.0


class UIProcess:
    """``chatbot ui`` on a free loopback port with its own data folder; stopped on exit."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="chatbot-ui-")
        self.log_path = new_log_path("ui")
        self._log = self.log_path.open("wb")
        full_env = {
            **os.environ,
            "CHATBOT_DATA_DIR": self._tmp.name,
            "TOKENIZERS_PARALLELISM": "false",
            **(env or {}),
        }
        command = [str(CHATBOT), "ui", "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"chatbot ui exited with {self.process.returncode}:\n{self.log()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/_stcore/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.25)
        self.close()
        raise RuntimeError(f"chatbot ui not ready after {START_TIMEOUT_S:.0f}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        self._tmp.cleanup()

    def __enter__(self) -> UIProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@pytest.fixture
def start_ui() -> Iterator[Callable[..., UIProcess]]:
    started: list[UIProcess] = []

    def start(*args: str, **env: str) -> UIProcess:
        ui = UIProcess(*args, env=env)
        started.append(ui)
        return ui

    yield start
    for ui in started:
        ui.close()
