"""The same load straight on an engine, without HTTP: the ceiling for the layers above it.

Every simulated client is an asyncio task on one loop, reading ``engine.generate()`` as the
serving core does: no thread per request, so the figures carry no cost the server lacks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator

from chatbot.bench.prompts import prompt_for
from chatbot.bench.stats import LevelResult, RequestRecord, summarise
from chatbot.domain import GenerationParams, Message
from chatbot.engine.base import Engine

logger = logging.getLogger(__name__)


async def generate_one(engine: Engine, prompt: str, max_tokens: int, who: int) -> RequestRecord:
    start = time.monotonic()
    record = RequestRecord(client=who, started=start)
    chunks = engine.generate([Message.user(prompt)], GenerationParams(max_new_tokens=max_tokens))
    try:
        async for chunk in chunks:
            if chunk.text:
                record.chunk_times.append(time.monotonic() - start)
            if chunk.finished:
                record.completion_tokens = chunk.usage.completion_tokens
    except Exception as exc:  # a bench reports failures; it does not stop at the first
        record.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
    record.duration = time.monotonic() - start
    return record


async def run_level(
    engine: Engine, concurrency: int, requests_per_client: int, max_tokens: int
) -> LevelResult:
    """``concurrency`` clients, each sending its requests one after another."""
    records: list[RequestRecord] = []

    async def one_client(who: int) -> None:
        for index in range(requests_per_client):
            record = await generate_one(engine, prompt_for(who, index), max_tokens, who)
            records.append(record)
            logger.info(
                "c=%d client %d request %d/%d: %d tokens in %.2fs",
                concurrency,
                who,
                index + 1,
                requests_per_client,
                record.tokens,
                record.duration,
            )

    started = time.monotonic()
    await asyncio.gather(*(one_client(i) for i in range(concurrency)))
    return summarise(concurrency, records, time.monotonic() - started)


async def warm_up(engine: Engine, requests: int, max_tokens: int) -> None:
    for index in range(requests):
        record = await generate_one(engine, prompt_for(0, index), max_tokens, 0)
        if record.error:
            raise RuntimeError(f"warm-up request failed: {record.error}")
