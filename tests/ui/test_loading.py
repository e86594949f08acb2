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
    # A load that lasts until the backend stops: the page is drawn while it loads, for certain.
    backend = start_backend(
        wait_ready=False, CHATBOT_ENGINE="scripted", CHATBOT_SCRIPTED_LOAD_S="3600"
    )
    deadline = time.monotonic() + 120
    while True:  # until the server answers, while its model still loads
        try:
            status = httpx.get(f"{backend.url}/v1/status", timeout=2)
        except httpx.HTTPError:
            status = None
        if status is not None:
            assert status.json()["loaded"] is False
            break
        assert time.monotonic() < deadline, backend.log()
        time.sleep(0.05)
    service = HttpChatService(backend.url)
    try:
        at = new_app(service).run()
        labels = [s.label for s in at.main.status]
        still = httpx.get(f"{backend.url}/readyz", timeout=30)
    finally:
        service.close()
    assert not at.exception
    assert any(label.startswith("Loading the model on the backend…") for label in labels), labels
    assert not at.error and not at.warning  # loading is not an error
    assert still.status_code == 503, still.text  # it was loading all along, not failing
    assert "still loading" in still.text
