"""Process faults of ``chatbot serve``: kill -9 mid-reply then a restart, and SIGTERM mid-stream.

Both backends share one SQLite file (one CHATBOT_DATA_DIR), as a restarted container would.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatbot.domain import MessageStatus, Role
from chatbot.store import ConversationStore
from tests.fixtures.prompts import LONG_PROMPT
from tests.fixtures.servers import SCRIPTED, BackendProcess
from tests.reliability.support import StreamResult, chat_body, record

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

COUNT_DOWN = "Count down from 300 to 1, one number per line."
LONG = {"max_new_tokens": 300, "temperature": 0.0, "ignore_eos": True}
# The process's faults are the subject, not the model: the scripted engine (300 tokens: 15 s).
ENV = {"CHATBOT_MAX_TOKENS_CAP": "400", "CHATBOT_SHUTDOWN_GRACE_S": "3", **SCRIPTED}


def _create(client: httpx.Client, params: dict[str, Any]) -> str:
    response = client.post("/v1/conversations", json={"params": params})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


class Streams:
    """Streaming requests in threads; :meth:`wait_for_text` until each has shown some text."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.results: dict[str, StreamResult] = {}
        self._seen: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []

    def start(self, key: str, path: str, body: dict[str, Any]) -> None:
        seen = self._seen[key] = threading.Event()
        self.results[key] = result = StreamResult(status=0)

        def run() -> None:
            with httpx.Client(base_url=self.url, timeout=httpx.Timeout(120, read=120)) as client:
                try:
                    with client.stream("POST", path, json=body) as response:
                        result.status = response.status_code
                        for line in response.iter_lines():
                            if line.startswith("data: "):
                                result.events.append(line[6:])
                                if _text_of([line[6:]]):
                                    seen.set()
                except httpx.HTTPError as exc:
                    result.error = type(exc).__name__
            seen.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait_for_text(self, timeout: float = 120) -> None:
        for key, seen in self._seen.items():
            assert seen.wait(timeout), f"{key}: no text within {timeout:.0f}s"
            assert self.results[key].status == 200, self.results[key].summary()

    def join(self, timeout: float = 120) -> None:
        for thread in self._threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "a stream never ended"


def _text_of(events: list[str]) -> str:
    parts = []
    for data in events:
        if data == "[DONE]":
            continue
        payload = json.loads(data)
        if payload.get("type") == "delta":
            parts.append(payload.get("delta", ""))
        for choice in payload.get("choices", []):
            parts.append(choice.get("delta", {}).get("content") or "")
    return "".join(parts)


def _acknowledged_user(result: StreamResult) -> dict[str, Any]:
    start = json.loads(result.events[0])
    assert start["type"] == "start", start
    user: dict[str, Any] = start["user_message"]
    return user


def _wait_until_saved(url: str, conversation_ids: list[str], timeout: float = 60) -> None:
    """Until every reply shows saved text (on a loaded machine a save can take a while)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=30) as client:
        for cid in conversation_ids:
            while not client.get(f"/v1/conversations/{cid}").json()["messages"][-1]["content"]:
                assert time.monotonic() < deadline, "no partial text was saved"
                time.sleep(0.1)


def test_kill_9_mid_reply_then_restart_then_sigterm_mid_stream(
    start_backend: Callable[..., BackendProcess], tmp_path: Path
) -> None:
    env = {**ENV, "CHATBOT_DATA_DIR": str(tmp_path)}
    first = start_backend(**env)
    with httpx.Client(base_url=first.url, timeout=120) as client:
        finished = _create(client, {"max_new_tokens": 4})
        answered = client.post(f"/v1/conversations/{finished}/messages", json={"content": "Hi"})
        assert answered.status_code == 200, answered.text
        long_ids = [_create(client, LONG) for _ in range(4)]
    prompts = dict.fromkeys(long_ids, LONG_PROMPT)
    streams = Streams(first.url)
    for cid in long_ids:
        streams.start(
            cid, f"/v1/conversations/{cid}/messages", {"content": prompts[cid], "stream": True}
        )
    streams.wait_for_text()
    _wait_until_saved(first.url, long_ids)  # partial text is saved every 0.5 s
    first.process.send_signal(signal.SIGKILL)
    assert first.process.wait(30) == -signal.SIGKILL
    streams.join()

    second = start_backend(**env)  # same SQLite file
    interrupted = 0
    with httpx.Client(base_url=second.url, timeout=120) as client:
        listed = client.get("/v1/conversations").json()["data"]
        assert sorted(c["id"] for c in listed) == sorted([finished, *long_ids])  # none twice
        done = client.get(f"/v1/conversations/{finished}").json()["messages"]
        assert [(m["role"], m["status"]) for m in done] == [
            ("user", "complete"),
            ("assistant", "complete"),
        ]
        for cid in long_ids:
            result = streams.results[cid]
            acked = _acknowledged_user(result)
            seen = _text_of(result.events)
            messages = client.get(f"/v1/conversations/{cid}").json()["messages"]
            assert [m["role"] for m in messages] == [Role.USER, Role.ASSISTANT], messages
            user, reply = messages
            assert user["id"] == acked["id"] and user["content"] == prompts[cid]
            assert user["status"] == MessageStatus.COMPLETE
            assert reply["status"] == MessageStatus.INTERRUPTED, reply
            interrupted += 1
            stored = reply["content"]
            assert stored, "the saved part of the reply was lost"
            assert seen.startswith(stored) or stored.startswith(seen), (seen, stored)
        # The conversations are not stuck: each takes the next message.
        client.patch(f"/v1/conversations/{long_ids[0]}", json={"params": {"max_new_tokens": 3}})
        next_reply = client.post(
            f"/v1/conversations/{long_ids[0]}/messages", json={"content": "Thanks"}
        )
        assert next_reply.status_code == 200, next_reply.text

    # SIGTERM with streams in flight: conversation replies and OpenAI completions.
    sigterm = Streams(second.url)
    for cid in long_ids[1:]:
        sigterm.start(
            cid, f"/v1/conversations/{cid}/messages", {"content": COUNT_DOWN, "stream": True}
        )
    for n in range(2):
        sigterm.start(f"chat{n}", "/v1/chat/completions", chat_body(380, COUNT_DOWN, temperature=0))
    sigterm.wait_for_text()
    signalled = time.monotonic()
    second.process.send_signal(signal.SIGTERM)
    code = second.process.wait(60)
    exit_s = time.monotonic() - signalled
    sigterm.join()
    endings = {}
    for key, result in sigterm.results.items():
        last = result.events[-1]
        if key.startswith("chat"):
            ok = last == "[DONE]" or "error" in json.loads(last)
        else:
            ok = json.loads(last)["type"] in ("done", "error")
        assert ok, (key, last, result.error)
        endings[key] = "done" if last == "[DONE]" else json.loads(last).get("type", "error")
    assert code == 0, second.log()

    # What SIGTERM left behind: every user message once, replies finished or interrupted.
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'chatbot.sqlite3'}")
    try:
        statuses = []
        for cid in long_ids[1:]:
            messages = store.get_conversation(cid).messages
            assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT] * 2
            assert [m.content for m in messages if m.role is Role.USER] == [
                prompts[cid],
                COUNT_DOWN,
            ]
            statuses.append(messages[-1].status.value)
            assert messages[-1].status in (MessageStatus.COMPLETE, MessageStatus.INTERRUPTED)
    finally:
        store.close()
    record(
        "process_faults_backend",
        {
            "kill9_streams": len(long_ids),
            "kill9_replies_marked_interrupted": interrupted,
            "conversations_after_restart": len(listed),
            "sigterm_streams": len(sigterm.results),
            "sigterm_stream_endings": endings,
            "sigterm_exit_code": code,
            "sigterm_exit_s": round(exit_s, 2),
            "sigterm_stored_reply_statuses": statuses,
        },
    )
