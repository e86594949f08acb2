"""Two backends and two UIs on loopback sharing one PostgreSQL: no replica owns a conversation.

A conversation started through backend 1 continues through backend 2; a reply running on
backend 1 is re-attached to, refused a second writer, and stopped from a client of backend 2;
both ``chatbot ui --backend`` processes serve. Users own their conversations on both replicas:
another user can neither see, follow nor stop one, on either backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatbot.domain import GenerationParams, MessageStatus, ReplyEvent, ReplyEventType
from chatbot.domain.users import User
from chatbot.errors import ConflictError, NotFoundError
from chatbot.service.http import HttpChatService
from chatbot.store.api_keys import ApiKeyStore
from tests.engine.fault_upstream import free_port
from tests.fixtures.servers import SCRIPTED, BackendProcess

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
# The replicas and their shared database are the subject, not the model: the scripted engine,
# long replies past any end-of-text (ignore_eos): 120 tokens run for 6 s.
LONG = GenerationParams(max_new_tokens=120, ignore_eos=True)
# The UI's key: it may name the user it acts for (X-Chatbot-User), as HttpChatService.for_user does.
SERVICE_KEY = "replicas-test-service-key"
ALICE = User(id="https://issuer.example#alice", name="Ålice Ünïcödé 🙂")
BOB = User(id="bob@example.com", name="Bob")


@pytest.fixture(scope="module")
def shared_database(postgres_cluster: Any) -> Iterator[str]:
    name = postgres_cluster.create_database()
    yield str(postgres_cluster.url_for(name))
    postgres_cluster.drop_database(name)


@pytest.fixture(scope="module")
def backends(shared_database: str) -> Iterator[tuple[BackendProcess, BackendProcess]]:
    # One after the other: the first runs the migrations, the second finds them done.
    env = {
        "CHATBOT_DATABASE_URL": shared_database,
        "CHATBOT_SERVICE_KEY": SERVICE_KEY,
        **SCRIPTED,
    }
    with BackendProcess(env) as first, BackendProcess(env) as second:
        yield first, second


@pytest.fixture(scope="module")
def clients(backends: tuple[Any, Any]) -> Iterator[tuple[HttpChatService, HttpChatService]]:
    one, two = HttpChatService(backends[0].url), HttpChatService(backends[1].url)
    yield one, two
    one.close()
    two.close()


def reply_text(events: Iterator[ReplyEvent]) -> tuple[str, ReplyEvent]:
    text, last = "", None
    for event in events:
        text += event.delta
        last = event
    assert last is not None and last.type is ReplyEventType.DONE, last
    return text, last


def test_a_conversation_continues_on_the_other_replica(
    clients: tuple[HttpChatService, HttpChatService],
) -> None:
    one, two = clients
    conversation = one.create_conversation(
        title="replicas", params=GenerationParams(max_new_tokens=8)
    )
    first, _ = reply_text(one.send_message(conversation.id or "", "Hello!"))
    seen = two.get_conversation(conversation.id or "")
    assert [m.content for m in seen.messages] == ["Hello!", first]
    second, _ = reply_text(two.send_message(conversation.id or "", "How are you?"))
    again = one.get_conversation(conversation.id or "")
    assert [m.content for m in again.messages] == ["Hello!", first, "How are you?", second]
    assert conversation.id in {s.id for s in two.list_conversations()}


def start_long_reply(
    client: HttpChatService, conversation_id: str
) -> tuple[threading.Thread, list[ReplyEvent]]:
    """Send on replica 1 and read its stream in a thread; returns once text is flowing."""
    events: list[ReplyEvent] = []
    flowing = threading.Event()

    def read() -> None:
        for event in client.send_message(conversation_id, "Tell me a long story about the sea."):
            events.append(event)
            if event.type is ReplyEventType.DELTA:
                flowing.set()
        flowing.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert flowing.wait(120), "the reply on replica 1 did not start"
    return thread, events


def test_a_reply_on_one_replica_is_followed_from_the_other(
    clients: tuple[HttpChatService, HttpChatService],
) -> None:
    one, two = clients
    conversation = one.create_conversation(title="attach", params=LONG)
    cid = conversation.id or ""
    thread, events = start_long_reply(one, cid)
    with pytest.raises(ConflictError):  # one writer per conversation, across replicas
        list(two.send_message(cid, "me too"))
    followed, done = reply_text(two.attach(cid))
    thread.join(120)
    written = "".join(e.delta for e in events)
    assert followed == written  # the text so far, then the rest, in order
    assert done.message is not None and done.message.content == written
    stored = two.get_conversation(cid).messages[-1]
    assert stored.content == written and stored.status is MessageStatus.COMPLETE


def test_a_reply_on_one_replica_is_stopped_from_the_other(
    clients: tuple[HttpChatService, HttpChatService],
) -> None:
    one, two = clients
    conversation = one.create_conversation(
        title="stop", params=GenerationParams(max_new_tokens=400, ignore_eos=True)
    )
    cid = conversation.id or ""
    thread, events = start_long_reply(one, cid)
    asked = time.monotonic()
    assert two.stop(cid) is True
    thread.join(60)
    assert not thread.is_alive(), "the reply on replica 1 went on"
    print(f"stopped across replicas in {time.monotonic() - asked:.2f}s")
    assert events[-1].type is ReplyEventType.DONE
    stored = one.get_conversation(cid).messages[-1]
    assert stored.status is MessageStatus.STOPPED
    assert stored.stats is None or (stored.stats.completion_tokens or 0) < 400


# -- users on both replicas ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def service_clients(
    backends: tuple[Any, Any],
) -> Iterator[tuple[HttpChatService, HttpChatService]]:
    """What a UI of each replica holds: the service key, to act for its signed-in users."""
    one = HttpChatService(backends[0].url, SERVICE_KEY)
    two = HttpChatService(backends[1].url, SERVICE_KEY)
    yield one, two
    one.close()
    two.close()


def test_owners_hold_on_both_replicas(
    service_clients: tuple[HttpChatService, HttpChatService],
    clients: tuple[HttpChatService, HttpChatService],
    shared_database: str,
) -> None:
    local = clients  # no key: the local user (CHATBOT_AUTH=none)
    one, two = service_clients
    alice_one, alice_two = one.for_user(ALICE), two.for_user(ALICE)
    conversation = alice_one.create_conversation(
        title="alice's", params=GenerationParams(max_new_tokens=200, ignore_eos=True)
    )
    cid = conversation.id or ""
    thread, events = start_long_reply(alice_one, cid)
    following = alice_two.attach(cid)  # Alice on the other replica: hers to follow
    assert next(following).type is ReplyEventType.START
    bobs = (two.for_user(BOB), one.for_user(BOB))  # on the other replica, and the writer's
    for bob in bobs:  # a stop and an attach first, while the reply surely runs
        for call in (bob.stop, bob.attach):
            with pytest.raises(NotFoundError):
                call(cid)
    assert alice_one.get_conversation(cid).messages[-1].status is MessageStatus.STREAMING
    for bob in bobs:
        for call in (bob.get_conversation, bob.delete_conversation, bob.clear_conversation):
            with pytest.raises(NotFoundError):
                call(cid)
        with pytest.raises(NotFoundError):
            bob.send_message(cid, "me too")
        assert cid not in {c.id for c in bob.list_conversations()}
    keys = ApiKeyStore.open(shared_database)
    try:
        bob_key, _ = keys.create(BOB)
    finally:
        keys.close()
    for backend in (one, two):  # Bob with a key of his own, straight to each replica
        seen = httpx.get(
            f"{backend.base_url}/v1/conversations/{cid}",
            headers={"Authorization": f"Bearer {bob_key}"},
        )
        assert seen.status_code == 404 and seen.json()["error"]["type"] == "not_found_error"

    followed, done = reply_text(following)
    thread.join(120)
    written = "".join(e.delta for e in events)
    assert events[-1].type is ReplyEventType.DONE
    assert done.message is not None and done.message.status is MessageStatus.COMPLETE
    assert followed == written == done.message.content != ""
    assert [s.id for s in alice_two.list_conversations()] == [cid]
    assert alice_two.get_conversation(cid).title == "alice's"
    assert cid not in {c.id for c in local[0].list_conversations()}  # nor the local user's


# -- two UIs, one per backend ------------------------------------------------------------------
@pytest.fixture(scope="module")
def uis(backends: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    folder = tmp_path_factory.mktemp("uis")
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    chatbot = Path(sys.executable).with_name("chatbot")
    try:
        for number, backend in enumerate(backends):
            port = free_port()
            log = (folder / f"ui{number}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [
                        str(chatbot),
                        "ui",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--backend",
                        backend.url,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ},
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            wait_for_health(url, process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_health(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"chatbot ui exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"chatbot ui at {url} did not become healthy")


def test_both_uis_serve(uis: list[str]) -> None:
    assert len(uis) == 2
    for url in uis:
        health = httpx.get(f"{url}/_stcore/health", timeout=10)
        assert health.status_code == 200 and health.text.strip() == "ok"
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
