"""HttpChatService turns every HTTP failure into the project's own exception (chatbot.errors)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from chatbot import errors
from chatbot.service.http import HttpChatService, error_from_response


def _body(message: str, param: str | None = None, code: str | None = None) -> bytes:
    error = {"message": message, "type": "x", "param": param, "code": code}
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, errors.InvalidRequestError),
        (401, errors.AuthenticationError),
        (404, errors.NotFoundError),
        (405, errors.MethodNotAllowedError),
        (409, errors.ConflictError),
        (413, errors.PayloadTooLargeError),
        (422, errors.InvalidRequestError),
        (429, errors.OverloadedError),
        (500, errors.ChatbotError),  # the backend failed: "something went wrong"
        (502, errors.UpstreamError),
        (503, errors.UnavailableError),
        (504, errors.RequestTimeoutError),
        (418, errors.InvalidRequestError),
        (599, errors.UpstreamError),
    ],
)
def test_status_to_class(status: int, expected: type[errors.ChatbotError]) -> None:
    assert type(error_from_response(status, b"", {})) is expected
    assert type(errors.from_http(status, _body("why"), {})) is expected


def test_param_and_code_survive_the_trip() -> None:
    error = error_from_response(400, _body("content must not be empty", "content", "empty"))
    assert isinstance(error, errors.InvalidRequestError)
    assert (error.param, error.code) == ("content", "empty")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7),
        ("120", 120),
        ("0", 0),
        ("2.4", 1),  # not delay-seconds (RFC 9110: digits only): the default
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1),
        ("soon", 1),
        (None, 1),
    ],
)
def test_retry_after_is_read_unchanged(header: str | None, seconds: int) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    error = error_from_response(429, _body("busy"), headers)
    assert isinstance(error, errors.OverloadedError)
    assert error.retry_after_s == seconds


def test_a_body_that_is_not_json_still_gives_a_clear_message() -> None:
    error = error_from_response(502, b"<html>Bad Gateway</html>", {})
    assert isinstance(error, errors.UpstreamError)
    assert "502" in error.message


def test_a_framework_detail_is_kept_in_the_message() -> None:
    error = errors.from_http(422, b'{"detail": "field required"}', {})
    assert isinstance(error, errors.InvalidRequestError)
    assert "422" in error.message and "field required" in error.message


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
