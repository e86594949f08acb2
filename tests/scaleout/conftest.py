"""Fixtures of the scale-out tests: real upstream model servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.fault_upstream import free_port
from tests.scaleout.upstreams import LlamaServer, require_llama_server


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    require_llama_server()
    server = LlamaServer(free_port(), tmp_path_factory.mktemp("llama") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
