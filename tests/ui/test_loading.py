"""Over HTTP, a backend still loading its model: the page says so instead of an error."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from chatbot.service.http import HttpChatService
from tests.fixtures.servers import BackendProcess
from tests.ui.conftest import new_app

pytestmark = pytest.mark.slow


def test_the_page_says_the_backend_is_loading_the_model(
    start_backend: Callable[..., BackendProcess],
) -> None:
    # transformers loads for several seconds: the window in which the page is drawn.
    backend = start_backend(wait_ready=False, CHATBOT_ENGINE="transformers")
    deadline = time.monotonic() + 120
    while True:  # until the server answers, while its model still loads
        try:
            status = httpx.get(f"{backend.url}/v1/status", timeout=2)
        except httpx.HTTPError:
            status = None
        if status is not None:
            assert status.json()["loaded"] is False, "loaded before the page could be drawn"
            break
        assert time.monotonic() < deadline, backend.log()
        time.sleep(0.05)
    service = HttpChatService(backend.url)
    try:
        at = new_app(service).run()
        labels = [s.label for s in at.main.status]
        backend.wait_ready()
    finally:
        service.close()
    assert not at.exception
    assert any(label.startswith("Loading the model on the backend…") for label in labels), labels
    assert not at.error and not at.warning  # loading is not an error
