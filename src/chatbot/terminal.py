"""``chatbot chat``: a terminal chat, interactive or fed one message per line on stdin.

Interactive, it reads lines with :mod:`readline` (line editing, and a history kept across runs
when a history file is given); Ctrl-C stops a reply, which is kept as ``stopped``. The exit code
is 0 at the end of the input, 2 when the backend cannot be reached at all, 1 when a reply was
lost because it could not be reached later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import Future
from pathlib import Path
from types import FrameType
from typing import Protocol, TextIO

import httpx
from httpx_sse import SSEError, connect_sse

from chatbot.domain import (
    Conversation,
    ExportFormat,
    GenerationParams,
    Message,
    MessageStatus,
    Role,
    export,
)
from chatbot.engine import Engine
from chatbot.errors import (
    BackendUnreachableError,
    ChatbotError,
    GenerationError,
    UnavailableError,
    UpstreamError,
    error_from_event,
    from_http,
)
from chatbot.spinner import Spinner

logger = logging.getLogger(__name__)

HELP = "commands: /clear, /system TEXT, /save FILE (.csv .json .md .openai.json), /help, /quit"
EXIT_UNREACHABLE = 2  # the backend could not be reached at the start
EXIT_LOST_REPLY = 1  # it could not be reached for a reply later
READY_TIMEOUT_S = 600.0
READY_POLL_S = 0.5


class ReplySource(Protocol):
    """Streams a reply for a history; ``cancel`` stops the one in progress."""

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


_END = object()


class EngineReplies:
    """The engine in this process, driven from the terminal's blocking loop.

    ``generate()`` is async while the terminal reads stdin and takes Ctrl-C in the main thread.
    One event loop in one helper thread, started once, runs each reply as a task; its text
    crosses to the main thread through a queue (the main thread blocks there, where a signal
    still interrupts it). :meth:`cancel`, called from the SIGINT handler, cancels the task; that
    closes the engine's stream, and the engine stops within one step.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="terminal-loop", daemon=True)
        self._thread.start()
        self._current: Future[None] | None = None

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        out: queue.SimpleQueue[object] = queue.SimpleQueue()
        reply = self._pump(messages, params, out)
        self._current = current = asyncio.run_coroutine_threadsafe(reply, self._loop)
        # Done, failed or cancelled (even before it started): the reader stops waiting.
        # SimpleQueue.put is reentrant, so this may run inside the SIGINT handler.
        current.add_done_callback(lambda _: out.put(_END))
        try:
            while (item := out.get()) is not _END:
                if isinstance(item, ChatbotError):
                    raise item
                yield str(item)
        finally:
            current.cancel()
            self._current = None

    async def _pump(
        self, messages: list[Message], params: GenerationParams, out: queue.SimpleQueue[object]
    ) -> None:
        chunks = self._engine.generate(messages, params)
        try:
            async for chunk in chunks:
                if chunk.text:
                    out.put(chunk.text)
        except ChatbotError as exc:
            out.put(exc)
        except Exception as exc:  # the engine's bug: a line in the chat, the traceback logged
            logger.error("the engine failed while generating", exc_info=exc)
            out.put(GenerationError("the model failed while generating"))
        finally:
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()  # on cancel too: that is what stops the engine

    def cancel(self) -> None:
        current = self._current
        if current is not None:
            current.cancel()  # thread-safe: cancels the task on the terminal's loop

    def close(self) -> None:
        self.cancel()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()


class BackendReplies:
    """The backend's OpenAI-compatible route, streamed.

    httpx-sse reads the events (heartbeat comments, framing); an error answer or an error event
    becomes the class the backend raised (:mod:`chatbot.errors`), and a stream that ends without
    ``[DONE]`` is a dropped connection. Ctrl-C sets a flag read before each event: the reply
    stops at the next token or heartbeat.
    """

    def __init__(
        self, base_url: str, api_key: str | None, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(10.0, read=600.0),
            transport=transport,
        )
        self._cancelled = threading.Event()

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        self._cancelled.clear()
        body = {  # no "model": the backend's own model (a name it does not serve is a 404)
            "messages": [{"role": m.role.value, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
        }
        try:
            with connect_sse(self._client, "POST", "/v1/chat/completions", json=body) as source:
                response = source.response
                if response.status_code >= 400:
                    response.read()
                    raise from_http(response.status_code, response.content, response.headers)
                for sse in source.iter_sse():
                    if self._cancelled.is_set():
                        return
                    if sse.data == "[DONE]":
                        return
                    if not sse.data:
                        continue
                    chunk = json.loads(sse.data)
                    if "error" in chunk:
                        raise error_from_event(chunk)
                    delta = (
                        chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
                    )
                    if delta:
                        yield delta
        except SSEError as exc:
            raise UpstreamError(f"the backend did not answer with an event stream: {exc}") from exc
        except httpx.TransportError as exc:
            raise BackendUnreachableError(f"cannot reach the backend: {exc}") from exc
        except ValueError as exc:
            raise UpstreamError("the backend sent an event that is not JSON") from exc
        if not self._cancelled.is_set():
            raise BackendUnreachableError("the backend closed the reply stream before it ended")

    def cancel(self) -> None:
        self._cancelled.set()

    def wait_ready(self, out: TextIO, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until the backend's ``/readyz`` says ready, with a spinner while it loads its model.

        BackendUnreachableError when nothing answers; UnavailableError when it stays not ready.
        """
        if self._ready():
            return
        deadline = time.monotonic() + timeout_s
        with Spinner("The backend is loading the model", out):
            while time.monotonic() < deadline:
                time.sleep(READY_POLL_S)
                if self._ready():
                    return
        raise UnavailableError(f"the backend was not ready after {timeout_s:g} s")

    def _ready(self) -> bool:
        try:
            response = self._client.get("/readyz")
        except httpx.TransportError as exc:
            raise BackendUnreachableError(
                f"cannot reach the backend at {self._client.base_url}: {exc}"
            ) from exc
        return response.status_code == 200

    def close(self) -> None:
        self._client.close()


class TerminalChat:
    """Keeps the history, runs commands, streams replies; Ctrl-C stops a reply, not the chat."""

    def __init__(self, replies: ReplySource, params: GenerationParams, out: TextIO) -> None:
        self._replies = replies
        self._params = params
        self._out = out
        self._history: list[Message] = []
        self._system: str | None = None
        self._replying = False
        self._stopped = False
        self._lost_reply = False

    def run(self, lines: TextIO, interactive: bool) -> int:
        """Chat until the input ends or /quit; the exit code (see the module)."""
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            while True:
                try:
                    line = _read_line(lines, interactive)
                except KeyboardInterrupt:
                    self._write("\n")
                    continue
                if not line:
                    return EXIT_LOST_REPLY if self._lost_reply else 0
                text = line.rstrip("\n")
                if not text.strip():
                    continue
                if text.startswith("/"):
                    if not self._command(text):
                        return 0
                    continue
                self._reply(text)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self._replying:
            self._stopped = True
            self._replies.cancel()
        else:
            raise KeyboardInterrupt

    def _reply(self, text: str) -> None:
        self._history.append(Message.user(text))
        prompt = ([Message.system(self._system)] if self._system else []) + self._history
        parts: list[str] = []
        status = MessageStatus.COMPLETE
        self._stopped = False
        self._replying = True
        try:
            for chunk in self._replies.stream(prompt, self._params):
                parts.append(chunk)
                self._write(chunk)
        except ChatbotError as exc:
            status = MessageStatus.ERROR
            self._lost_reply = self._lost_reply or isinstance(exc, BackendUnreachableError)
            self._write(f"\n[error: {exc.message}]")
        finally:
            self._replying = False
        if self._stopped and status is MessageStatus.COMPLETE:
            status = MessageStatus.STOPPED
            self._write(" [stopped]")
        self._write("\n")
        self._history.append(Message(role=Role.ASSISTANT, content="".join(parts), status=status))

    def _command(self, text: str) -> bool:
        name, _, arg = text.partition(" ")
        match name:
            case "/quit" | "/exit":
                return False
            case "/clear":
                self._history.clear()
                self._write("[history cleared]\n")
            case "/system":
                self._system = arg.strip() or None
                self._write("[system prompt set]\n" if self._system else "[system prompt off]\n")
            case "/save":
                self._save(arg.strip())
            case _:
                self._write(HELP + "\n")
        return True

    def _save(self, filename: str) -> None:
        if not filename:
            self._write("[usage: /save FILE.csv|.json|.md|.openai.json]\n")
            return
        try:
            fmt = ExportFormat.from_filename(filename)
            conversation = Conversation(system_prompt=self._system, messages=tuple(self._history))
            Path(filename).write_text(export(conversation, fmt), encoding="utf-8")
            self._write(f"[saved {len(self._history)} messages to {filename}]\n")
        except ChatbotError as exc:
            self._write(f"[error: {exc.message}]\n")
        except OSError as exc:
            self._write(f"[cannot write {filename}: {exc.strerror}]\n")

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()


def _read_line(lines: TextIO, interactive: bool) -> str:
    """The next line with its newline; "" at the end. Interactive: ``input()``, so readline
    gives line editing and history."""
    if not interactive:
        return lines.readline()
    try:
        return input("\n> ") + "\n"
    except EOFError:
        return ""


def run_terminal_chat(
    replies: ReplySource, params: GenerationParams, *, history_file: Path | None = None
) -> int:
    interactive = sys.stdin.isatty()
    if isinstance(replies, BackendReplies):
        try:
            replies.wait_ready(sys.stderr)
        except ChatbotError as exc:
            sys.stderr.write(f"chatbot chat: {exc.message}\n")
            replies.close()
            return EXIT_UNREACHABLE
    if interactive:
        _start_readline(history_file)
        sys.stdout.write(f"chatbot: {HELP}\n")
    try:
        return TerminalChat(replies, params, sys.stdout).run(sys.stdin, interactive)
    finally:
        replies.close()
        if interactive:
            _save_readline(history_file)


def _start_readline(history_file: Path | None) -> None:
    try:
        import readline
    except ImportError:  # not on every platform; input() still works
        return
    if history_file is not None:
        with contextlib.suppress(OSError):
            readline.read_history_file(history_file)
    readline.set_history_length(1000)


def _save_readline(history_file: Path | None) -> None:
    if history_file is None:
        return
    try:
        import readline

        history_file.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(history_file)
    except (ImportError, OSError) as exc:
        logger.warning("could not save the chat history: %s", exc)
