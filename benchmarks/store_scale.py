"""Store at scale: list and load times with 10,000 conversations and 100,000 messages.

Fills a fresh SQLite file and a fresh PostgreSQL database (a throw-away server started like the
test fixture does) by bulk insert, then times the store's own calls and prints a markdown table.

    .venv/bin/python benchmarks/store_scale.py [--conversations N] [--messages-per M] [--repeat R]

Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.fixtures.databases (the throw-away PostgreSQL)

from sqlalchemy import insert, text  # noqa: E402

from chatbot.store import ConversationStore  # noqa: E402
from chatbot.store.database import open_engine, writer  # noqa: E402
from chatbot.store.models import ConversationRow, MessageRow  # noqa: E402

logger = logging.getLogger("store_scale")
BATCH = 5_000
WORDS = tuple(
    [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "tokens",
        "stream",
        "into",
        "the",
        "store",
    ]
)


def fill(url: str, conversations: int, per_conversation: int) -> float:
    """Bulk insert; returns seconds. updated_at grows with the index, so order is known."""
    rng = random.Random(0)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    engine = writer(open_engine(url))
    started = time.perf_counter()
    conv_rows = [
        {
            "id": f"{i:032x}",
            "title": f"Conversation {i}",
            "title_custom": False,
            "system_prompt": None,
            "params": {"max_new_tokens": 256},
            "created_at": base + timedelta(seconds=i),
            "updated_at": base + timedelta(seconds=i),
        }
        for i in range(conversations)
    ]
    with engine.begin() as connection:
        for chunk in range(0, len(conv_rows), BATCH):
            connection.execute(insert(ConversationRow), conv_rows[chunk : chunk + BATCH])
    batch: list[dict[str, object]] = []
    with engine.begin() as connection:
        for i in range(conversations):
            for position in range(per_conversation):
                batch.append(
                    {
                        "id": f"{i:016x}{position:016x}",
                        "conversation_id": f"{i:032x}",
                        "position": position,
                        "role": "user" if position % 2 == 0 else "assistant",
                        "content": " ".join(rng.choices(WORDS, k=40)),
                        "status": "complete",
                        "created_at": base + timedelta(seconds=i, milliseconds=position),
                        "stats": None,
                        "owner_id": None,
                        "heartbeat_at": None,
                        "stop_requested": False,
                    }
                )
                if len(batch) >= BATCH:
                    connection.execute(insert(MessageRow), batch)
                    batch.clear()
        if batch:
            connection.execute(insert(MessageRow), batch)
        connection.execute(text("ANALYZE"))
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and 95th percentile in milliseconds, after one warm-up call."""
    call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def measure(name: str, url: str, args: argparse.Namespace) -> list[str]:
    store = ConversationStore.open(url)
    try:
        fill_s = fill(url, args.conversations, args.messages_per)
        n = args.conversations
        deep = max(0, n - 50)
        first = store.list_conversations(limit=50)
        assert first[0].id == f"{n - 1:032x}" and first[0].message_count == args.messages_per
        assert len(store.list_conversations(limit=50, offset=deep)) == min(50, n)
        rng = random.Random(1)
        rows = []
        for label, call in (
            ("list, first page (50)", lambda: store.list_conversations(limit=50)),
            (f"list, deep page (offset {deep})",
             lambda: store.list_conversations(limit=50, offset=deep)),
            (f"load one conversation ({args.messages_per} messages)",
             lambda: store.get_conversation(f"{rng.randrange(n):032x}")),
        ):  # fmt: skip
            median, p95 = timed(call, args.repeat)
            rows.append(f"| {name} | {label} | {median:.2f} | {p95:.2f} |")
        total = args.conversations * args.messages_per
        rows.append(
            f"| {name} | bulk fill ({args.conversations:,} conversations, {total:,} messages) "
            f"| {fill_s * 1000:.0f} | |"
        )
        return rows
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages-per", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    table = ["| store | operation | median ms | p95 ms |", "|---|---|---:|---:|"]
    with tempfile.TemporaryDirectory() as folder:
        logger.info("SQLite ...")
        table += measure("SQLite (WAL)", f"sqlite:///{folder}/scale.sqlite3", args)
    if not args.skip_postgres:
        from tests.fixtures.databases import PostgresServer, find_pg_bin

        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise SystemExit("PostgreSQL binaries missing: run `make system-deps`")
        server = PostgresServer(bin_dir).start()
        try:
            logger.info("PostgreSQL ...")
            database = server.create_database()
            version = bin_dir.parent.name
            table += measure(f"PostgreSQL {version}", server.url_for(database), args)
        finally:
            server.stop()
    sys.stdout.write("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
