"""A real ``chatbot serve`` against clients that misbehave below the app, and its shutdown.

Raw sockets open connections that send nothing, trickle their headers (slow loris), declare a
body and never send it, or sit idle after a response: each is closed within its deadline. A
key in a query string never reaches the server's output. SIGTERM while a non-streamed reply is
still being written answers it with a JSON 503 before the server exits.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.fixtures.prompts import LONG_PROMPT
from tests.fixtures.servers import SCRIPTED, BackendProcess
from tests.fixtures.waiting import wait_until
from tests.reliability.support import metric, record

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
KEEP_ALIVE_S = 1
# How long past a deadline the server may take to act on it.
SLACK_S = 2.0


@pytest.fixture(scope="module")
def strict_backend() -> Iterator[BackendProcess]:
    env = {
        "CHATBOT_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "CHATBOT_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "CHATBOT_KEEP_ALIVE_TIMEOUT_S": str(KEEP_ALIVE_S),
        "CHATBOT_API_KEY": "k-1",
        "CHATBOT_MAX_TOKENS_CAP": "4",
        **SCRIPTED,  # connections are the subject, not the model
    }
    with BackendProcess(env) as backend:
        yield backend


def _connect(backend: BackendProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", backend.port), timeout=10)
    sock.settimeout(HEADER_TIMEOUT_S + BODY_TIMEOUT_S + 10)
    return sock


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took."""
    started = time.monotonic()
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


def _trickle(sock: socket.socket, data: bytes, pause_s: float, stop: threading.Event) -> None:
    for byte in data:
        if stop.is_set():
            return
        with contextlib.suppress(OSError):
            sock.sendall(bytes([byte]))
        time.sleep(pause_s)


def test_idle_and_slow_connections_are_closed(strict_backend: BackendProcess) -> None:
    figures: dict[str, float] = {}
    deadline = HEADER_TIMEOUT_S + SLACK_S

    # 1. A connection that never sends a byte.
    with _connect(strict_backend) as sock:
        data, took = _read_until_closed(sock)
    assert data == b"" and took < deadline, took
    figures["silent_connection_closed_s"] = round(took, 2)

    # 2. Slow loris: the request head one byte every 0.2 s (it would take ~10 s in all).
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 20 + b"\r\n\r\n"
    stop = threading.Event()
    with _connect(strict_backend) as sock:
        trickler = threading.Thread(target=_trickle, args=(sock, head, 0.2, stop))
        trickler.start()
        data, took = _read_until_closed(sock)
        stop.set()
        trickler.join()
    assert b"200" not in data and took < deadline, (data, took)
    figures["slow_loris_closed_s"] = round(took, 2)

    # 3. A body declared but never sent: a 408 in the usual error shape, then closed.
    with _connect(strict_backend) as sock:
        sock.sendall(
            b"POST /v1/conversations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k-1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        data, took = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert b"CHATBOT_BODY_TIMEOUT_S" in data and took < BODY_TIMEOUT_S + SLACK_S, took
    figures["unsent_body_408_s"] = round(took, 2)

    # 4. Keep-alive: after a complete answer, an idle connection is closed.
    with _connect(strict_backend) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data, took = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200") and took < KEEP_ALIVE_S + SLACK_S, (data, took)
    figures["keep_alive_idle_closed_s"] = round(took, 2)

    # A well-behaved client is not affected, and the server is still ready.
    with httpx.Client(base_url=strict_backend.url, timeout=30) as client:
        for _ in range(3):
            assert client.get("/readyz").status_code == 200
            time.sleep(0.3)
    record("connection_timeouts", figures)


def test_a_key_in_the_query_string_never_reaches_the_log(strict_backend: BackendProcess) -> None:
    secret = "sk-query-secret-4242"
    with httpx.Client(base_url=strict_backend.url, timeout=30) as client:
        for params in (
            {"api_key": secret},
            {"key": secret, "limit": "5"},
            {"access_token": secret},
            {"Token": secret},
        ):
            client.get("/v1/conversations", params=params)
            client.get("/healthz", params=params)
        client.get(f"/v1/models?{secret}")
    # Until the access log has the last request (it is written after the response is sent).
    wait_until(lambda: '"GET /v1/models' in strict_backend.log(), strict_backend.log)
    log = strict_backend.log()
    assert "/healthz?api_key=***" in log  # the access log is on, and redacts
    assert secret not in log
    assert "limit=5" in log  # other parameters stay readable


def test_sigterm_answers_a_non_streamed_send_with_json_503(
    start_backend: Callable[..., BackendProcess],
) -> None:
    grace_s = 1.0
    backend = start_backend(
        CHATBOT_SHUTDOWN_GRACE_S=str(grace_s), CHATBOT_MAX_TOKENS_CAP="1500", **SCRIPTED
    )
    client = httpx.Client(base_url=backend.url, timeout=60)
    cid = client.post(
        "/v1/conversations",
        json={"params": {"max_new_tokens": 1500, "temperature": 0.0, "ignore_eos": True}},
    ).json()["id"]
    answer: dict[str, httpx.Response | BaseException] = {}

    def send() -> None:
        try:
            answer["response"] = client.post(
                f"/v1/conversations/{cid}/messages",
                json={"content": LONG_PROMPT},
            )
        except BaseException as exc:
            answer["response"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    # Until the reply has text: it is being written, and will not end by itself for seconds.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        messages = client.get(f"/v1/conversations/{cid}").json()["messages"]
        if len(messages) == 2 and messages[-1]["content"]:
            break
        time.sleep(0.1)
    # A second request still arriving: its body comes slowly (within CHATBOT_BODY_TIMEOUT_S),
    # so no route can answer it before the grace ends; the server must, in JSON.
    pending = _connect(backend)
    pending.sendall(
        f"POST /v1/conversations/{cid}/messages HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    # Its head is read: the app serves it (the send and it), so the drain must answer it.
    wait_until(lambda: metric(backend.url, "chatbot_http_requests_active") == 2, backend.log)
    signalled = time.monotonic()
    backend.process.send_signal(signal.SIGTERM)
    sender.join(60)
    answered_s = time.monotonic() - signalled
    late, _ = _read_until_closed(pending)
    pending.close()
    late_s = time.monotonic() - signalled
    code = backend.process.wait(60)
    exit_s = time.monotonic() - signalled
    response = answer["response"]
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == "service_unavailable" and error["code"] == "shutting_down"
    assert answered_s < exit_s and code == 0, backend.log()
    head, _, body = late.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"application/json" in head.lower(), late
    assert b'"shutting_down"' in body, late
    assert late_s < exit_s, (late_s, exit_s)
    client.close()
    record(
        "sigterm_non_streamed",
        {
            "grace_s": grace_s,
            "answered_s": round(answered_s, 2),
            "half_sent_answered_s": round(late_s, 2),
            "exit_s": round(exit_s, 2),
        },
    )
