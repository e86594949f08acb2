"""The same load straight on an engine, without HTTP: the ceiling for the layers above it."""

from __future__ import annotations

import logging
import threading
import time

from chatbot.bench.prompts import prompt_for
from chatbot.bench.stats import LevelResult, RequestRecord, summarise
from chatbot.domain import GenerationParams, Message
from chatbot.engine.base import Engine

logger = logging.getLogger(__name__)


def generate_one(engine: Engine, prompt: str, max_tokens: int, who: int) -> RequestRecord:
    start = time.monotonic()
    record = RequestRecord(client=who, started=start)
    try:
        generation = engine.start(
            [Message.user(prompt)], GenerationParams(max_new_tokens=max_tokens)
        )
        for _chunk in generation:
            record.chunk_times.append(time.monotonic() - start)
        if generation.outcome is not None:
            record.completion_tokens = generation.outcome.usage.completion_tokens
    except Exception as exc:  # a bench reports failures; it does not stop at the first
        record.error = f"{type(exc).__name__}: {exc}"[:200]
    record.duration = time.monotonic() - start
    return record


def run_level(
    engine: Engine, concurrency: int, requests_per_client: int, max_tokens: int
) -> LevelResult:
    records: list[RequestRecord] = []
    lock = threading.Lock()

    def one_client(who: int) -> None:
        for index in range(requests_per_client):
            record = generate_one(engine, prompt_for(who, index), max_tokens, who)
            with lock:
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

    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarise(concurrency, records, time.monotonic() - started)


def warm_up(engine: Engine, requests: int, max_tokens: int) -> None:
    for index in range(requests):
        record = generate_one(engine, prompt_for(0, index), max_tokens, 0)
        if record.error:
            raise RuntimeError(f"warm-up request failed: {record.error}")
