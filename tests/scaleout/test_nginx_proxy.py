"""Debian's nginx, run for real with deploy/nginx.conf, in front of a real backend.

The first streamed chunk must come through nginx before the reply is complete (nothing is
buffered), and time to first token through nginx is close to direct; the figures are written
to test-artifacts/nginx_ttft.json. Speed is reported, not asserted (beyond a generous bound).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.deploy.nginx_config import nginx_binary, render
from tests.engine.fault_upstream import free_port
from tests.scaleout.streaming import StreamTiming, time_stream

pytestmark = pytest.mark.slow
ROUNDS = 2
TOKENS = 64  # streamed over a few tenths of a second even on a fast engine


@pytest.fixture(scope="module")
def nginx_url(backend_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (make system-deps installs nginx-light)")
    backend = urlsplit(backend_server.url).netloc
    folder = tmp_path_factory.mktemp("nginx")
    port = free_port()
    config = render(port, [backend, backend], folder)
    process = subprocess.Popen(
        [binary, "-p", str(folder), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, folder)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], folder: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (folder / "error.log").read_text() if (folder / "error.log").exists() else ""
            pytest.fail(f"nginx exited ({process.returncode}): {log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail("nginx did not answer on its port")


def test_probes_and_seed_pass_through(nginx_url: str) -> None:
    assert httpx.get(f"{nginx_url}/", timeout=10).json() == {"status": "OK!"}
    assert httpx.get(f"{nginx_url}/readyz", timeout=10).status_code == 200


@pytest.mark.timeout(900)
def test_first_chunk_arrives_before_the_reply_is_complete(
    nginx_url: str, backend_server: Any, artifacts_dir: Path
) -> None:
    time_stream(backend_server.url, max_tokens=2)  # warm both paths' connections
    time_stream(nginx_url, max_tokens=2)
    direct: list[StreamTiming] = []
    proxied: list[StreamTiming] = []
    for _ in range(ROUNDS):
        direct.append(time_stream(backend_server.url, TOKENS))
        proxied.append(time_stream(nginx_url, TOKENS))
    for timing in proxied:
        assert timing.pieces >= 8
        # streamed, not buffered: the first text came well before the end of the reply
        assert timing.first_text_s < timing.done_s - 0.05, timing
    assert proxied[0].text == direct[0].text  # greedy: the same reply either way
    ttft_direct = statistics.median(t.first_text_s for t in direct)
    ttft_proxied = statistics.median(t.first_text_s for t in proxied)
    figures = {
        "rounds": ROUNDS,
        "ttft_direct_median_s": round(ttft_direct, 4),
        "ttft_nginx_median_s": round(ttft_proxied, 4),
        "ttft_overhead_s": round(ttft_proxied - ttft_direct, 4),
        "reply_direct_median_s": round(statistics.median(t.done_s for t in direct), 4),
        "reply_nginx_median_s": round(statistics.median(t.done_s for t in proxied), 4),
    }
    (artifacts_dir / "nginx_ttft.json").write_text(json.dumps(figures, indent=2))
    print(f"nginx TTFT figures: {figures}")
    assert ttft_proxied < ttft_direct + 1.0  # generous: 2 shared cores, timing not asserted
