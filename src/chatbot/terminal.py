"""``chatbot chat``: a terminal chat, interactive or fed one message per line on stdin."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Protocol, TextIO

import httpx

from chatbot.domain import (
    Conversation,
    ExportFormat,
    GenerationParams,
    Message,
    export,
)
from chatbot.engine import Engine, Generation
from chatbot.errors import BackendUnreachableError, ChatbotError, UpstreamError

HELP = "commands: /clear, /system TEXT, /save FILE (.csv .json .md .openai.json), /help, /quit"


class ReplySource(Protocol):
    """Streams a reply for a history; ``cancel`` stops the one in progress."""

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]: ...

    def cancel(self) -> None: ...


class EngineReplies:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._current: Generation | None = None

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        self._current = generation = self._engine.start(messages, params)
        try:
            yield from generation
        finally:
            generation.cancel()
            self._current = None

    def cancel(self) -> None:
        current = self._current
        if current is not None:
            current.cancel()


class BackendReplies:
    """The backend's OpenAI-compatible route, streamed."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=httpx.Timeout(10.0, read=600.0)
        )
        self._cancelled = threading.Event()

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        self._cancelled.clear()
        body = {
            "model": "default",
            "messages": [{"role": m.role.value, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
        }
        try:
            with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise UpstreamError(_error_text(response))
                for line in response.iter_lines():
                    if self._cancelled.is_set():
                        return
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        raise UpstreamError(chunk["error"].get("message", "backend error"))
                    delta = (
                        chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
                    )
                    if delta:
                        yield delta
        except httpx.TransportError as exc:
            raise BackendUnreachableError(f"cannot reach the backend: {exc}") from exc

    def cancel(self) -> None:
        self._cancelled.set()


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"backend answered {response.status_code}"


class TerminalChat:
    """Keeps the history, runs commands, streams replies; Ctrl-C stops a reply, not the chat."""

    def __init__(self, replies: ReplySource, params: GenerationParams, out: TextIO) -> None:
        self._replies = replies
        self._params = params
        self._out = out
        self._history: list[Message] = []
        self._system: str | None = None
        self._replying = False

    def run(self, lines: TextIO, interactive: bool) -> int:
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            while True:
                if interactive:
                    self._write("\n> ")
                try:
                    line = lines.readline()
                except KeyboardInterrupt:
                    self._write("\n")
                    continue
                if not line:
                    return 0
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
            self._replies.cancel()
        else:
            raise KeyboardInterrupt

    def _reply(self, text: str) -> None:
        self._history.append(Message.user(text))
        prompt = ([Message.system(self._system)] if self._system else []) + self._history
        parts: list[str] = []
        self._replying = True
        try:
            for chunk in self._replies.stream(prompt, self._params):
                parts.append(chunk)
                self._write(chunk)
        except ChatbotError as exc:
            self._write(f"\n[error: {exc.message}]")
        finally:
            self._replying = False
        self._write("\n")
        self._history.append(Message.assistant("".join(parts)))

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


def run_terminal_chat(replies: ReplySource, params: GenerationParams) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        sys.stdout.write(f"chatbot: {HELP}\n")
    return TerminalChat(replies, params, sys.stdout).run(sys.stdin, interactive)
