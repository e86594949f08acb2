"""Dependency faults: PostgreSQL and the upstream model server go away under load and return.

Our services keep running throughout: while a dependency is down they answer clear 503/502
errors (never a 500), and they recover on their own when it is back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from unittest import mock

import httpx
import pytest

from tests.fixtures import servers
from tests.fixtures.databases import PostgresServer, find_pg_bin
from tests.fixtures.prompts import LONG_PROMPT
from tests.fixtures.servers import SCRIPTED, BackendProcess
from tests.reliability.support import chat_body, env_float, record

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

# Sent in every message: failed SQL must not carry it into the log (SQLAlchemy would by default).
MARKER = f"pg-outage-{uuid.uuid4().hex}"
# The database and the upstream are the subject, not the model: the scripted engine (a reply
# of 64 tokens is still being written when the database dies under it).


class RestartablePostgres(PostgresServer):
    """The fixture's server, plus stop and start on the same data folder."""

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c max_connections=200"
        )

    def halt(self) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")

    def resume(self) -> None:
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
            "-l", str(self.folder / "server.log"), "-o", self._options(),
        )  # fmt: skip


@pytest.fixture
def private_postgres() -> Iterator[RestartablePostgres]:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL server binaries missing: `make system-deps` installs them")
    server = RestartablePostgres(bin_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Outcome:
    at: float
    phase: str
    status: int
    code: str | None


class Probe:
    """Client threads that keep calling a few routes and note each status by phase."""

    def __init__(self, url: str, calls: Callable[[httpx.Client, int], httpx.Response]) -> None:
        self.url = url
        self.calls = calls
        self.phase = "up"
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, clients: int) -> None:
        for index in range(clients):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            turn = 0
            while not self._stop.is_set():
                phase = self.phase
                try:
                    response = self.calls(client, index + turn)
                    code = None
                    if response.status_code >= 400:
                        code = response.json().get("error", {}).get("code")
                    outcome = Outcome(time.monotonic(), phase, response.status_code, code)
                except httpx.HTTPError as exc:
                    outcome = Outcome(time.monotonic(), phase, 0, type(exc).__name__)
                if self.phase != phase:  # straddled a change: it belongs to neither phase
                    outcome = Outcome(outcome.at, "transition", outcome.status, outcome.code)
                with self._lock:
                    self.outcomes.append(outcome)
                turn += 1
                time.sleep(0.05)

    def wait_recovered(self, since: float, in_a_row: int = 4, timeout: float = 90) -> None:
        """Until the last ``in_a_row`` answers after ``since`` all succeeded (or the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                recent = [o.status for o in self.outcomes if o.at >= since][-in_a_row:]
            if len(recent) == in_a_row and all(0 < s < 400 for s in recent):
                return
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(90)

    def statuses(self, phase: str) -> Counter[int]:
        return Counter(o.status for o in self.outcomes if o.phase == phase)

    def first_ok_after(self, moment: float) -> float | None:
        times = [o.at for o in self.outcomes if o.at >= moment and o.status < 400]
        return min(times) - moment if times else None


def _conversation_calls(client: httpx.Client, turn: int) -> httpx.Response:
    if turn % 3 == 0:
        return client.get("/v1/conversations")
    created = client.post("/v1/conversations", json={"params": {"max_new_tokens": 2}})
    if created.status_code != 201 or turn % 3 == 1:
        return created
    cid = created.json()["id"]
    return client.post(f"/v1/conversations/{cid}/messages", json={"content": f"Hi {MARKER}"})


def test_postgres_down_gives_503_and_the_backend_recovers_by_itself(
    private_postgres: RestartablePostgres, start_backend: Callable[..., BackendProcess]
) -> None:
    backend = start_backend(
        CHATBOT_DATABASE_URL=private_postgres.url, CHATBOT_MAX_TOKENS_CAP="8", **SCRIPTED
    )
    down_s = env_float("CHATBOT_FAULT_DOWN_SECONDS", 6)
    probe = Probe(backend.url, _conversation_calls)
    probe.start(3)
    probe.wait_recovered(0.0)  # a few answers while all is well first
    probe.phase = "down"
    private_postgres.halt()
    time.sleep(down_s)
    ready_while_down = httpx.get(f"{backend.url}/readyz").status_code
    probe.phase = "back"
    private_postgres.resume()
    resumed = time.monotonic()
    probe.wait_recovered(resumed)
    probe.stop()
    recovery = probe.first_ok_after(resumed)
    down = probe.statuses("down")
    down_codes = Counter(str(o.code) for o in probe.outcomes if o.phase == "down" and o.status)
    back_tail = [o.status for o in probe.outcomes if o.phase == "back"][-4:]
    figures = {
        "up": dict(probe.statuses("up")),
        "transition": dict(probe.statuses("transition")),
        "down": dict(down),
        "down_error_codes": dict(down_codes),
        "back": dict(probe.statuses("back")),
        "down_s": down_s,
        "readyz_while_down": ready_while_down,
        "first_success_after_restart_s": None if recovery is None else round(recovery, 2),
        "backend_pid_unchanged": backend.process.poll() is None,
    }
    record("postgres_down", figures)
    assert probe.statuses("up") and set(probe.statuses("up")) <= {200, 201}, figures
    assert down[503] > 0, figures  # the outage was seen, as a 503
    for phase in ("down", "transition", "back"):  # every request answered, never a 500
        statuses = probe.statuses(phase)
        assert not [s for s in statuses if s >= 500 and s != 503], figures
        assert 0 not in statuses, figures
    assert down_codes.get("database_unavailable", 0) > 0, figures
    assert recovery is not None and back_tail and all(s < 400 for s in back_tail), figures
    assert backend.process.poll() is None  # recovered without a restart
    log = backend.log_path.read_text(errors="replace")
    assert "database write failed" in log or "database read failed" in log
    assert MARKER not in log


class PinnedBackend(BackendProcess):
    """A backend on a given port, so that one can come back where it was."""

    def __init__(self, port: int, env: dict[str, str]) -> None:
        with mock.patch.object(servers, "free_port", return_value=port):
            super().__init__(env)


def _chat_calls(client: httpx.Client, turn: int) -> httpx.Response:
    if turn % 2:
        return client.post("/v1/chat/completions", json={**chat_body(3), "stream": False})
    cid = client.post("/v1/conversations", json={"params": {"max_new_tokens": 3}})
    if cid.status_code != 201:
        return cid
    return client.post(f"/v1/conversations/{cid.json()['id']}/messages", json={"content": "Hi"})


def test_upstream_down_gives_502_or_503_and_recovery_when_it_returns(
    start_backend: Callable[..., BackendProcess],
) -> None:
    port = servers.free_port()
    upstream_env = {"CHATBOT_MAX_TOKENS_CAP": "8", **SCRIPTED}
    upstream: BackendProcess | None = PinnedBackend(port, upstream_env)
    try:
        front = start_backend(
            CHATBOT_ENGINE="openai",
            CHATBOT_OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1",
            CHATBOT_OPENAI_TIMEOUT_S="30",
            CHATBOT_MAX_TOKENS_CAP="8",
        )
        probe = Probe(front.url, _chat_calls)
        probe.start(2)
        probe.wait_recovered(0.0)  # a few answers while all is well first
        probe.phase = "down"
        assert upstream is not None
        upstream.close()
        upstream = None
        time.sleep(env_float("CHATBOT_FAULT_DOWN_SECONDS", 6))
        streamed = _stream_status(front.url)
        probe.phase = "back"
        upstream = PinnedBackend(port, upstream_env)
        returned = time.monotonic()
        probe.wait_recovered(returned)
        probe.stop()
    finally:
        if upstream is not None:
            upstream.close()
    down = probe.statuses("down")
    recovery = probe.first_ok_after(returned)
    back_tail = [o.status for o in probe.outcomes if o.phase == "back"][-4:]
    figures = {
        "up": dict(probe.statuses("up")),
        "transition": dict(probe.statuses("transition")),
        "down": dict(down),
        "down_error_codes": dict(
            Counter(str(o.code) for o in probe.outcomes if o.phase == "down" and o.status)
        ),
        "stream_while_down": streamed,
        "back": dict(probe.statuses("back")),
        "first_success_after_return_s": None if recovery is None else round(recovery, 2),
    }
    record("upstream_down", figures)
    assert probe.statuses("up") and set(probe.statuses("up")) <= {200, 201}, figures
    assert down[502] + down[503] > 0, figures
    # While it starts again the upstream itself answers 503 (loading): still never a 500.
    for phase in ("down", "transition", "back"):
        statuses = probe.statuses(phase)
        assert not [s for s in statuses if s >= 500 and s not in (502, 503)], figures
        assert 0 not in statuses, figures
    assert streamed in ("502", "503", "error event"), figures
    assert recovery is not None and back_tail and all(s < 400 for s in back_tail), figures
    assert front.process.poll() is None


def _stream_status(url: str) -> str:
    """A streaming request while the upstream is down: a plain 502/503, or an error event."""
    with (
        httpx.Client(base_url=url, timeout=60) as client,
        client.stream("POST", "/v1/chat/completions", json=chat_body(3)) as response,
    ):
        if response.status_code != 200:
            return str(response.status_code)
        text = response.read().decode()
    return "error event" if '"error"' in text and "[DONE]" not in text else f"200: {text[:200]}"


def _stored_reply(client: httpx.Client, cid: str) -> dict[str, object]:
    """The conversation's last message once the database answers again."""
    deadline = time.monotonic() + 30
    while True:
        response = client.get(f"/v1/conversations/{cid}")
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            last: dict[str, object] = response.json()["messages"][-1]
            return last
        time.sleep(0.2)


def test_a_reply_answered_complete_is_stored_even_if_postgres_dies_right_after(
    private_postgres: RestartablePostgres, start_backend: Callable[..., BackendProcess]
) -> None:
    """The server runs with synchronous_commit=off, where a commit returns before it is on disk.

    PostgreSQL is killed (immediate stop) the moment the client has its 200 ``complete``, and
    started again: the stored reply must be the same, complete. A reply whose end cannot be
    stored (the database dies while it is written) is a 503 ``reply_not_saved``, never a 200.
    """
    backend = start_backend(
        CHATBOT_DATABASE_URL=private_postgres.url, CHATBOT_MAX_TOKENS_CAP="64", **SCRIPTED
    )
    client = httpx.Client(base_url=backend.url, timeout=60)
    outcomes: list[str] = []
    for round_number in range(4):
        cid = client.post("/v1/conversations", json={"params": {"max_new_tokens": 6}}).json()["id"]
        answer = client.post(
            f"/v1/conversations/{cid}/messages", json={"content": f"Say hi {round_number}"}
        )
        private_postgres.halt()  # at once: the last commit may still be only in memory
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "complete"
        private_postgres.resume()
        stored = _stored_reply(client, cid)
        assert stored["status"] == "complete", stored
        assert stored["content"] == answer.json()["content"]
        outcomes.append("200 complete, stored complete")

    # The database dies while the reply is being written: the client is told it was not saved.
    long = {"max_new_tokens": 64, "ignore_eos": True}  # 64 tokens of 0.05 s: 3 s of writing
    cid = client.post("/v1/conversations", json={"params": long}).json()["id"]
    result: dict[str, httpx.Response] = {}
    sender = threading.Thread(
        target=lambda: result.update(
            response=client.post(
                f"/v1/conversations/{cid}/messages",
                json={"content": LONG_PROMPT},
            )
        )
    )
    sender.start()
    while len(client.get(f"/v1/conversations/{cid}").json()["messages"]) < 2:
        time.sleep(0.05)
    private_postgres.halt()
    sender.join(60)
    private_postgres.resume()
    response = result["response"]
    stored = _stored_reply(client, cid)
    if response.status_code == 200:  # the reply ended before the database went down
        assert stored["status"] == "complete" and stored["content"] == response.json()["content"]
        outcomes.append("200 complete, stored complete")
    else:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "reply_not_saved", response.text
        assert stored["status"] != "complete", stored
        outcomes.append(f"503 reply_not_saved, stored {stored['status']}")
    client.close()
    record("postgres_reply_durability", {"rounds": outcomes})
