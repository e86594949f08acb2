"""A small OpenAI-compatible server on loopback whose failures a test can choose.

Real servers do not fail on demand, so the mapping of each upstream failure (a status, a hang,
a cut stream, a malformed chunk) is tested against this one; the happy paths are tested against
real model servers in tests/scaleout/. The last user message picks the behaviour.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "fault-model"
WINDOW = 4096
WORDS = ("Hello", ", ", "wor", "ld")
# What "call" answers: two calls of the request's first tool, its arguments in pieces.
CALL_ARGUMENTS = ('{"city": ', '"Paris"}')
CALL_IDS = ("call_up_0", "call_up_1")
# How long the hang-* behaviours stay silent: far beyond any client timeout under test.
HANG_S = 30


@dataclass
class UpstreamLog:
    """What the server saw, for assertions."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    # The requests (indexes into ``bodies``) whose hang-* silence ran out: a client error seen
    # while its request is not here came from the client's own timeout or close.
    ran_out: set[int] = field(default_factory=set)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def _chunk(text: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": text} if text is not None else {}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def build_app(log: UpstreamLog) -> Starlette:
    async def models(request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "max_model_len": WINDOW}]}
        )

    async def completions(request: Request) -> Response:
        body = await request.json()
        log.bodies.append(body)
        index = len(log.bodies) - 1
        log.authorization.append(request.headers.get("authorization"))
        behaviour = body["messages"][-1]["content"]
        if behaviour.startswith("empty-"):  # llama-cpp-python's way to fail after the head
            if body.get("stream"):
                return StreamingResponse(iter(()), media_type="text/event-stream")
            behaviour = "400" if behaviour == "empty-400" else "json"
        if behaviour.isdigit():
            status = int(behaviour)
            error = {
                "message": f"upstream says {status}",
                "type": "x",
                "param": "messages",
                "code": "context_length_exceeded" if status == 400 else None,
            }
            headers = {"Retry-After": "7"} if status == 429 else None
            return JSONResponse({"error": error}, status_code=status, headers=headers)
        if behaviour == "json":
            return JSONResponse(
                {
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "whole"},
                            "finish_reason": "length",
                        }
                    ],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 2},
                }
            )
        if behaviour in ("call", "call-json"):  # as vLLM answers a request with tools
            name = body["tools"][0]["function"]["name"]
            if not body.get("stream") or behaviour == "call-json":
                return JSONResponse(_called(name))
            return StreamingResponse(_call_stream(name, log), media_type="text/event-stream")
        if behaviour == "hang-head":
            await _hang(log, index)
        return StreamingResponse(_stream(behaviour, log, index), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", completions, methods=["POST"]),
        ]
    )


def _called(name: str) -> dict[str, Any]:
    function = {"name": name, "arguments": "".join(CALL_ARGUMENTS)}
    calls = [{"id": id_, "type": "function", "function": function} for id_ in CALL_IDS]
    message = {"role": "assistant", "content": None, "tool_calls": calls}
    return {
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 9},
    }


async def _call_stream(name: str, log: UpstreamLog) -> AsyncIterator[bytes]:
    """Each call's id, type and name first, then its arguments in pieces (OpenAI's order)."""
    try:
        yield _sse(_chunk(""))
        for index, id_ in enumerate(CALL_IDS):
            head = {"index": index, "id": id_, "type": "function"}
            head["function"] = {"name": name, "arguments": ""}
            yield _sse(_tool_delta(head))
            for piece in CALL_ARGUMENTS:
                yield _sse(_tool_delta({"index": index, "function": {"arguments": piece}}))
        yield _sse(_chunk(None, "tool_calls"))
        yield _sse({"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 9}})
        yield _sse("[DONE]")
    finally:
        log.disconnected.set()


def _tool_delta(call: dict[str, Any]) -> dict[str, Any]:
    chunk = _chunk()
    chunk["choices"][0]["delta"] = {"tool_calls": [call]}
    return chunk


async def _hang(log: UpstreamLog, index: int) -> None:
    """Stay silent for HANG_S, then note that request ``index`` waited its silence out."""
    await asyncio.sleep(HANG_S)
    log.ran_out.add(index)


async def _stream(behaviour: str, log: UpstreamLog, index: int) -> AsyncIterator[bytes]:
    try:
        if behaviour == "garbage":
            yield b"data: {not json\n\n"
            return
        if behaviour == "error-event":
            yield _sse(_chunk("partial"))
            yield _sse({"error": {"message": "out of memory", "type": "server_error"}})
            return
        yield b": ping\n\n"
        for word in WORDS:
            yield _sse(_chunk(word))
            if behaviour == "hang-stream":
                await _hang(log, index)
            if behaviour == "cut":
                return
        yield _sse(_chunk(None, "length" if behaviour == "length" else "stop"))
        if behaviour != "no-usage":
            yield _sse({"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 4}})
        yield _sse("[DONE]")
    finally:
        log.disconnected.set()


@contextmanager
def running_upstream(port: int | None = None) -> Iterator[tuple[str, UpstreamLog]]:
    """Serve the app on a loopback port in a thread; yield (base URL, log)."""
    log = UpstreamLog()
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(log),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,  # the hang-* handlers sleep on after their client left
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the fault upstream did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1", log
    finally:
        server.should_exit = True
        thread.join(timeout=10)
