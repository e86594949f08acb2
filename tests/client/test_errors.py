"""HttpChatService turns every HTTP failure into the project's own exception, by status."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from chatbot import errors
from chatbot.api import errors as api_errors  # noqa: F401  (its error classes join the walk)
from chatbot.service.http import STATUS_ERRORS, HttpChatService, error_from_response


def _all_error_classes() -> list[type[errors.ChatbotError]]:
    found: list[type[errors.ChatbotError]] = []
    pending: list[type[errors.ChatbotError]] = [errors.ChatbotError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _body(message: str, param: str | None = None, code: str | None = None) -> bytes:
    error = {"message": message, "type": "x", "param": param, "code": code}
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    "cls", [c for c in _all_error_classes() if c.status_code >= 400], ids=lambda c: c.__name__
)
def test_every_status_the_api_sends_has_an_explicit_mapping(
    cls: type[errors.ChatbotError],
) -> None:
    """Completeness: a new error class with a new status fails here until the client knows it."""
    assert cls.status_code in STATUS_ERRORS
    error = error_from_response(cls.status_code, _body("why"), {"Retry-After": "3"})
    assert type(error) is STATUS_ERRORS[cls.status_code]
    assert error.message == "why"
    if cls.status_code != 500:  # a generic 500 comes back as UpstreamError ("backend failed")
        assert error.status_code == cls.status_code
        assert isinstance(error, cls) or issubclass(cls, type(error))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, errors.InvalidRequestError),
        (401, errors.AuthenticationError),
        (404, errors.NotFoundError),
        (409, errors.ConflictError),
        (413, errors.PayloadTooLargeError),
        (422, errors.InvalidRequestError),
        (429, errors.OverloadedError),
        (500, errors.UpstreamError),
        (502, errors.UpstreamError),
        (503, errors.UnavailableError),
        (504, errors.RequestTimeoutError),
        (418, errors.InvalidRequestError),
        (599, errors.UpstreamError),
    ],
)
def test_status_to_class(status: int, expected: type[errors.ChatbotError]) -> None:
    assert type(error_from_response(status, b"", {})) is expected


def test_param_and_code_survive_the_trip() -> None:
    error = error_from_response(400, _body("content must not be empty", "content", "empty"))
    assert isinstance(error, errors.InvalidRequestError)
    assert (error.param, error.code) == ("content", "empty")


@pytest.mark.parametrize(("header", "seconds"), [("7", 7), ("2.4", 2), ("soon", 1), (None, 1)])
def test_retry_after_becomes_seconds(header: str | None, seconds: int) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    error = error_from_response(429, _body("busy"), headers)
    assert isinstance(error, errors.OverloadedError)
    assert error.retry_after_s == seconds


def test_a_body_that_is_not_json_still_gives_a_clear_message() -> None:
    error = error_from_response(502, b"<html>Bad Gateway</html>", {})
    assert isinstance(error, errors.UpstreamError)
    assert "502" in error.message


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_nothing_listening_is_backend_unreachable() -> None:
    service = HttpChatService(f"http://127.0.0.1:{_closed_port()}", connect_timeout_s=2)
    with pytest.raises(errors.BackendUnreachableError, match="cannot reach"):
        service.list_conversations()
    with pytest.raises(errors.BackendUnreachableError):
        service.send_message("abc", "hello")
    with pytest.raises(errors.BackendUnreachableError):
        _ = service.model_id


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A real socket that accepts connections and never answers: a hung backend."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_backend_that_does_not_answer_is_unreachable_after_the_timeout(
    silent_server: str,
) -> None:
    service = HttpChatService(silent_server, read_timeout_s=0.5)
    with pytest.raises(errors.BackendUnreachableError, match="did not answer"):
        service.get_conversation("abc")
    with pytest.raises(errors.BackendUnreachableError, match="did not answer"):
        service.send_message("abc", "hello")
