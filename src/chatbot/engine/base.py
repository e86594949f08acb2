"""The engine protocol: messages plus parameters in, an async stream of :class:`Chunk` out.

Every engine implements one method that matters, :meth:`Engine.generate`, an async generator
(optionally constrained to a JSON schema: structured output):

- the first chunk comes once the prompt is accepted (it fits the context window and is
  queued in the engine); it may carry no text. Errors about the prompt (context overflow)
  raise before it, so a caller can still answer them with a plain 4xx;
- then a chunk per piece of new text, with the running usage;
- the last chunk has ``finish_reason`` set;
- closing the iterator (``aclose()``, leaving an ``async for``, cancelling the task that
  reads it) cancels the request inside the engine within one decoding step.

Engines that run a model in a thread of their own hand chunks to the event loop through a
:class:`ChunkChannel`: one ``loop.call_soon_threadsafe`` per chunk, no thread per request,
no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from chatbot.domain import FinishReason, GenerationParams, Message, Usage
from chatbot.errors import ChatbotError, GenerationError

T = TypeVar("T")

#: Who counts the chunks a model thread still produces after its reader cancelled (the
#: ``chatbot_tokens_after_cancel`` metric). Set by the reply runner around ``generate()``; a
#: context variable, so engines need not know about metrics and nothing is shared by accident.
late_chunk_counter: ContextVar[Callable[[], None] | None] = ContextVar(
    "late_chunk_counter", default=None
)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One step of a reply: new text and the usage so far; the last names why it ended.

    Until the last chunk, ``usage.completion_tokens`` counts text chunks; the last chunk
    carries the engine's exact token count.
    """

    text: str
    usage: Usage
    finish_reason: FinishReason | None = None
    dropped_messages: int = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(frozen=True, slots=True)
class GenerationOutcome:
    """How a generation ended, as the model thread reports it."""

    finish_reason: FinishReason
    usage: Usage
    dropped_messages: int = 0


@dataclass(frozen=True, slots=True)
class Accepted:
    """The prompt fits and is queued: how many tokens it has and how many messages were cut."""

    prompt_tokens: int
    dropped_messages: int = 0


@runtime_checkable
class Engine(Protocol):
    """What every model runtime implements."""

    @property
    def model_id(self) -> str: ...

    @property
    def context_window(self) -> int: ...

    def load(self) -> None:
        """Load weights; idempotent. Called at start or on first use, never at import."""

    def generate(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        json_schema: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[Chunk, None]:
        """Stream the reply; see the module docstring for the chunk contract.

        With ``json_schema`` the reply is JSON that validates against it (constrained
        decoding); a schema the engine cannot enforce raises InvalidRequestError before the
        first chunk.
        """

    def close(self) -> None:
        """Stop background work and free the model."""


class ChunkChannel:
    """Text from a model thread to one reader in an event loop, in one hop per chunk.

    The model thread calls :meth:`push` (text, then a :class:`GenerationOutcome`, or an
    exception); the reader's loop gets each item through ``call_soon_threadsafe``. The model
    thread reads :attr:`cancelled` before every step.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_late_chunk: Callable[[], None] | None = None
    ) -> None:
        self._loop = loop
        self._items: asyncio.Queue[str | GenerationOutcome | BaseException] = asyncio.Queue()
        self._cancel = threading.Event()
        self._on_late_chunk = on_late_chunk

    # -- model thread ----------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def push(self, item: str | GenerationOutcome | BaseException) -> None:
        if self._cancel.is_set():
            if isinstance(item, str) and self._on_late_chunk is not None:
                self._on_late_chunk()
            return
        # RuntimeError: the reader's loop has closed, so nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)

    # -- reader ----------------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    async def chunks(self, accepted: Accepted) -> AsyncIterator[Chunk]:
        """The accepted chunk, the text chunks, the final chunk; cancels when left early."""
        usage = Usage(prompt_tokens=accepted.prompt_tokens)
        dropped = accepted.dropped_messages
        try:
            yield Chunk("", usage, dropped_messages=dropped)
            completion = 0
            while True:
                item = await self._items.get()
                if isinstance(item, GenerationOutcome):
                    yield Chunk("", item.usage, item.finish_reason, item.dropped_messages)
                    return
                if isinstance(item, ChatbotError):
                    raise item
                if isinstance(item, BaseException):
                    raise GenerationError("the model failed while generating") from item
                completion += 1
                yield Chunk(
                    item,
                    Usage(prompt_tokens=accepted.prompt_tokens, completion_tokens=completion),
                    None,
                    dropped,
                )
        finally:
            self._cancel.set()


class PromptWorker:
    """One thread per engine that tokenizes and fits prompts.

    Off the event loop (a long prompt takes tens of milliseconds to tokenize) and off the model
    thread (so a context overflow is answered at once, not after the running reply). One
    thread whatever the load: the process's thread count does not grow with requests.
    """

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-prompt")

    async def run(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def stream_threaded(
    worker: PromptWorker, submit: Callable[[ChunkChannel], Accepted]
) -> AsyncGenerator[Chunk, None]:
    """The :meth:`Engine.generate` of engines with a model thread.

    ``submit`` runs on the prompt worker: it fits and tokenizes the prompt, queues the request
    on the model thread with the channel, and says what it accepted (or raises).
    """
    channel = ChunkChannel(asyncio.get_running_loop(), late_chunk_counter.get())
    try:
        accepted = await worker.run(lambda: submit(channel))
        async for chunk in channel.chunks(accepted):
            yield chunk
    finally:
        channel.cancel()  # also when the reader left while the prompt was being prepared


async def collect(stream: AsyncIterator[Chunk]) -> tuple[str, Chunk]:
    """The whole text and the final chunk of a stream (tests, warm-up, benchmarks)."""
    parts: list[str] = []
    last: Chunk | None = None
    async for chunk in stream:
        parts.append(chunk.text)
        last = chunk
    if last is None or not last.finished:
        raise GenerationError("the engine ended a reply without a final chunk")
    return "".join(parts), last
