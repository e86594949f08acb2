"""The terminal chat's two reply sources, without a model or a server.

``EngineReplies`` drives an async engine from the blocking terminal (Ctrl-C cancels the stream
inside the engine); ``BackendReplies`` reads the OpenAI route's SSE with httpx-sse.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from chatbot import errors
from chatbot.domain import FinishReason, GenerationParams, Message, Usage
from chatbot.engine import Chunk
from chatbot.spinner import Spinner
from chatbot.terminal import (
    EXIT_LOST_REPLY,
    EXIT_UNREACHABLE,
    BackendReplies,
    EngineReplies,
    TerminalChat,
)
from tests.fixtures.waiting import wait_until

PARAMS = GenerationParams(max_new_tokens=8)
CHATBOT = Path(sys.executable).parent / "chatbot"


class FakeEngine:
    """Streams ``words`` (forever when ``endless``); records that its stream was closed."""

    model_id = "fake"
    context_window = 1000

    def __init__(
        self, words: Sequence[str], *, endless: bool = False, fail: Exception | None = None
    ) -> None:
        self.words, self.endless, self.fail = list(words), endless, fail
        self.first_text = threading.Event()
        self.closed = threading.Event()
        self.threads: set[str] = set()

    def load(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[Chunk]:
        self.threads.add(threading.current_thread().name)
        try:
            if self.fail is not None:
                raise self.fail
            yield Chunk("", Usage(prompt_tokens=len(messages)))
            count = 0
            while True:
                for word in self.words:
                    await asyncio.sleep(0.01)
                    count += 1
                    yield Chunk(word, Usage(prompt_tokens=len(messages), completion_tokens=count))
                    self.first_text.set()
                if not self.endless:
                    break
            yield Chunk("", Usage(prompt_tokens=1, completion_tokens=count), FinishReason.STOP)
        finally:
            self.closed.set()


def test_engine_replies_stream_the_text_on_one_loop_thread() -> None:
    engine = FakeEngine(["Hel", "lo"])
    replies = EngineReplies(engine)
    try:
        assert "".join(replies.stream([Message.user("hi")], PARAMS)) == "Hello"
        assert "".join(replies.stream([Message.user("again")], PARAMS)) == "Hello"
    finally:
        replies.close()
    assert engine.threads == {"terminal-loop"}


def test_cancel_closes_the_engine_stream() -> None:
    engine = FakeEngine(["word "], endless=True)
    replies = EngineReplies(engine)
    try:
        stream = replies.stream([Message.user("go on")], PARAMS)
        assert next(stream) == "word "
        replies.cancel()
        rest = list(stream)  # ends instead of running forever
        assert len(rest) < 50
        assert engine.closed.wait(5)
    finally:
        replies.close()


def test_leaving_a_reply_early_closes_the_engine_stream() -> None:
    engine = FakeEngine(["word "], endless=True)
    replies = EngineReplies(engine)
    try:
        stream = replies.stream([Message.user("go on")], PARAMS)
        next(stream)
        stream.close()
        assert engine.closed.wait(5)
    finally:
        replies.close()


@pytest.mark.parametrize(
    ("fail", "shown"),
    [
        (errors.ContextOverflowError("the message is too long for the context window"), "too long"),
        (RuntimeError("CUDA exploded"), "the model failed while generating"),
    ],
)
def test_engine_errors_become_a_line_in_the_chat(fail: Exception, shown: str) -> None:
    replies = EngineReplies(FakeEngine([], fail=fail))
    out = io.StringIO()
    try:
        assert TerminalChat(replies, PARAMS, out).run(io.StringIO("hi\n"), False) == 0
    finally:
        replies.close()
    assert "[error: " in out.getvalue() and shown in out.getvalue()
    assert "CUDA" not in out.getvalue()


def _run_in_own_process(scenario: str, *args: str) -> None:
    """Runs a scenario that sends a real SIGINT in a process of its own: a SIGINT to the whole
    pytest process (with a browser, model threads and native libraries loaded by earlier tests)
    crashed it in clean-clone runs; a user's terminal holds only the chat."""
    call = f"from tests.test_terminal import {scenario}; {scenario}(*{list(args)!r})"
    result = subprocess.run(
        [sys.executable, "-c", call],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_ctrl_c_stops_the_reply_but_not_the_chat() -> None:
    _run_in_own_process("ctrl_c_scenario")


def ctrl_c_scenario() -> None:
    engine = FakeEngine(["word "], endless=True)
    replies = EngineReplies(engine)

    def interrupt_once_text_flows() -> None:
        if engine.first_text.wait(10):
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_text_flows, daemon=True).start()
    out = io.StringIO()
    chat = TerminalChat(replies, PARAMS, out)
    try:
        assert chat.run(io.StringIO("tell me a long story\n/clear\n"), False) == 0
    finally:
        replies.close()
    assert engine.closed.wait(5)
    assert "word" in out.getvalue() and "[history cleared]" in out.getvalue()


# -- BackendReplies ------------------------------------------------------------------------


def _chunk(text: str) -> bytes:
    body = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


def _backend(handler: Callable[[httpx.Request], httpx.Response]) -> BackendReplies:
    return BackendReplies("http://backend", None, transport=httpx.MockTransport(handler))


def _sse(parts: list[bytes]) -> BackendReplies:
    class Body(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield from parts

    headers = {"content-type": "text/event-stream"}
    return _backend(lambda request: httpx.Response(200, headers=headers, stream=Body()))


def test_backend_replies_read_the_openai_stream() -> None:
    replies = _sse([b": ping\n\n", _chunk("Hel"), _chunk("lo"), b"data: [DONE]\n\n", _chunk("x")])
    assert "".join(replies.stream([Message.user("hi")], PARAMS)) == "Hello"


def test_backend_refusal_keeps_its_class_and_retry_after() -> None:
    status, body, headers = errors.to_http(errors.OverloadedError("busy", retry_after_s=9))
    replies = _backend(lambda request: httpx.Response(status, json=body, headers=headers))
    with pytest.raises(errors.OverloadedError) as info:
        list(replies.stream([Message.user("hi")], PARAMS))
    assert info.value.retry_after_s == 9


def test_backend_error_event_keeps_its_class() -> None:
    raised = errors.UpstreamTimeoutError("the upstream model server timed out")
    event = f"data: {json.dumps(errors.to_http(raised)[1])}\n\n".encode()
    replies = _sse([_chunk("a"), event])
    with pytest.raises(errors.UpstreamTimeoutError, match="timed out"):
        list(replies.stream([Message.user("hi")], PARAMS))


def test_backend_stream_cut_before_done_is_unreachable() -> None:
    replies = _sse([_chunk("a")])
    with pytest.raises(errors.BackendUnreachableError, match="before it ended"):
        list(replies.stream([Message.user("hi")], PARAMS))


def test_backend_down_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(errors.BackendUnreachableError, match="cannot reach"):
        list(_backend(refuse).stream([Message.user("hi")], PARAMS))


# -- stopped replies, exit codes, the spinner ----------------------------------------------


def test_a_stopped_reply_is_kept_as_stopped(tmp_path: Path) -> None:
    _run_in_own_process("stopped_reply_scenario", str(tmp_path))


def stopped_reply_scenario(folder: str) -> None:
    tmp_path = Path(folder)
    engine = FakeEngine(["word "], endless=True)
    replies = EngineReplies(engine)

    def interrupt_once_text_flows() -> None:
        if engine.first_text.wait(10):
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_text_flows, daemon=True).start()
    out = io.StringIO()
    saved = tmp_path / "chat.json"
    try:
        code = TerminalChat(replies, PARAMS, out).run(
            io.StringIO(f"tell me a long story\n/save {saved}\n"), False
        )
    finally:
        replies.close()
    assert code == 0
    assert "[stopped]" in out.getvalue()
    messages = json.loads(saved.read_text())["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", "stopped"),
    ]
    assert messages[1]["content"].startswith("word")


def test_a_reply_lost_to_an_unreachable_backend_exits_non_zero() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    out = io.StringIO()
    code = TerminalChat(_backend(refuse), PARAMS, out).run(io.StringIO("hi\n"), False)
    assert code == EXIT_LOST_REPLY
    assert "[error: cannot reach the backend" in out.getvalue()


@pytest.mark.slow
def test_chat_against_a_backend_that_is_down_exits_2_and_says_why() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run(
        [str(CHATBOT), "chat", "--backend", f"http://127.0.0.1:{port}"],
        input="Hello\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_UNREACHABLE, done.stderr
    assert "cannot reach the backend" in done.stderr
    assert "Traceback" not in done.stderr


def test_waiting_for_a_loading_backend_spins_until_ready() -> None:
    answers = iter([503, 503, 200])

    def readyz(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/readyz"
        return httpx.Response(next(answers), json={})

    out = io.StringIO()
    _backend(readyz).wait_ready(out, timeout_s=10)
    assert "The backend is loading the model" in out.getvalue()


def test_the_spinner_draws_frames_on_a_terminal_and_one_line_elsewhere() -> None:
    drawn = io.StringIO()
    with Spinner("Loading the model", drawn, animate=True):
        wait_until(  # two frames drawn, however busy the machine
            lambda: drawn.getvalue().count("Loading the model… 0 s") >= 2,
            drawn.getvalue,
            interval_s=0.01,
        )
    assert drawn.getvalue().count("Loading the model… 0 s") >= 2
    assert drawn.getvalue().endswith("\r\033[K")
    plain = io.StringIO()
    with Spinner("Loading the model", plain):  # a StringIO is not a terminal
        pass
    assert plain.getvalue() == "Loading the model…\n"
