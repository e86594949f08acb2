"""kill -9 in the middle of a reply: every acknowledged message survives, nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatbot.config import LimitSettings
from chatbot.domain import GenerationParams, MessageStatus, ReplyEventType, Role
from chatbot.engine.transformers_engine import TransformersEngine
from chatbot.service.local import ChatService
from chatbot.service.portal import PortalChatService
from chatbot.store import ConversationStore
from tests.service.kill_worker import PROMPT

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    url = f"sqlite:///{tmp_path / 'killed.sqlite3'}"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.service.kill_worker", url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


@pytest.mark.slow
@pytest.mark.reliability
def test_kill_9_mid_reply(
    worker: tuple[subprocess.Popen[str], str], embedded_engine: TransformersEngine
) -> None:
    process, url = worker
    assert process.stdout is not None
    conversation_id = process.stdout.readline().strip()
    assert conversation_id, f"the worker ended early with code {process.poll()}"

    # Opening the store here runs recovery, which must leave the live reply alone.
    observer = ConversationStore.open(url)
    try:
        deadline = time.monotonic() + 240
        while True:
            reply = observer.get_conversation(conversation_id).messages[-1]
            assert reply.status is MessageStatus.STREAMING, "the reply ended before the kill"
            if reply.content:
                break
            assert time.monotonic() < deadline, "no partial text was saved"
            time.sleep(0.1)
    finally:
        observer.close()
    os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
    saved = reply.content

    service = PortalChatService.around(
        ChatService(embedded_engine, ConversationStore.open(url), LimitSettings())
    )
    try:
        messages = service.get_conversation(conversation_id).messages
        assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT]
        assert messages[0].content == PROMPT and messages[0].status is MessageStatus.COMPLETE
        assert messages[1].status is MessageStatus.INTERRUPTED
        assert messages[1].content.startswith(saved) and messages[1].content
        assert len(service.list_conversations()) == 1
        # The conversation is not stuck: it takes the next message at once.
        service.update_conversation(conversation_id, params=GenerationParams(max_new_tokens=3))
        events = list(service.send_message(conversation_id, "Thanks"))
        assert events[-1].type is ReplyEventType.DONE
        assert len(service.get_conversation(conversation_id).messages) == 4
    finally:
        service.close()
