"""The ``chatbot bench`` command: flags, the run over concurrency levels, and its outputs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatbot.bench import engine_load, http_load
from chatbot.bench.report import plot, table, write_json
from chatbot.bench.stats import LevelResult
from chatbot.errors import ConfigurationError

logger = logging.getLogger(__name__)

DEFAULT_LEVELS = "1,2,4,8,16"


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (/v1 is added)"
    )
    target.add_argument(
        "--engine",
        choices=("openvino", "transformers", "llamacpp"),
        help="bench the engine in this process, without HTTP (model: CHATBOT_MODEL)",
    )
    parser.add_argument(
        "--concurrency",
        default=DEFAULT_LEVELS,
        help=f"comma-separated client counts (default {DEFAULT_LEVELS})",
    )
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens asked per reply")
    parser.add_argument(
        "--requests-per-client",
        type=int,
        default=2,
        help="requests each client sends, one after another, per level",
    )
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured requests first")
    parser.add_argument("--api-key", default=None, help="Bearer key for the server")
    parser.add_argument(
        "--model",
        dest="bench_model",
        default=None,
        help="model name sent to the server (default: the first of /models)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="per-request timeout (s)")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--chart", type=Path, default=None, help="write a PNG chart")
    parser.add_argument("--label", default=None, help="name of this run in JSON and charts")


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigurationError(
            f"--concurrency: expected numbers like 1,2,4,8 but got {text!r}"
        ) from None
    if not levels or any(n < 1 or n > 1024 for n in levels):
        raise ConfigurationError("--concurrency: each level must be between 1 and 1024")
    return levels


def _check(args: argparse.Namespace) -> None:
    for name, value, low in (
        ("--max-tokens", args.max_tokens, 1),
        ("--requests-per-client", args.requests_per_client, 1),
        ("--warmup", args.warmup, 0),
    ):
        if value < low:
            raise ConfigurationError(f"{name}: must be at least {low}, got {value}")


def _base_url(url: str) -> str:
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"--url: expected http(s)://host:port[/v1], got {url!r}")
    return url if url.endswith("/v1") else f"{url}/v1"


def run_bench(args: argparse.Namespace) -> int:
    """Run every level, print a table, write JSON and chart; 1 when any request failed."""
    levels = _levels(args.concurrency)
    _check(args)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    if args.url:
        target_name = _base_url(args.url)
        results, model = _bench_http(args, target_name, levels)
    else:
        target_name = f"in-process {args.engine} engine"
        results, model = _bench_engine(args, levels)
    report: dict[str, Any] = {
        "label": args.label or target_name,
        "target": target_name,
        "model": model,
        "max_tokens": args.max_tokens,
        "requests_per_client": args.requests_per_client,
        "started_at": started_at,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "levels": [level.to_json() for level in results],
    }
    sys.stdout.write(table(report) + "\n")
    if args.output:
        write_json(report, args.output)
        logger.info("wrote %s", args.output)
    if args.chart:
        plot([report], args.chart, title=report["label"])
        logger.info("wrote %s", args.chart)
    return 1 if any(level.errors for level in results) else 0


def _bench_http(
    args: argparse.Namespace, base_url: str, levels: list[int]
) -> tuple[list[LevelResult], str]:
    async def go() -> tuple[list[LevelResult], str]:
        model = args.bench_model or await http_load.discover_model(base_url, args.api_key)
        target = http_load.HttpTarget(base_url, model, args.api_key, args.timeout)
        if args.warmup:
            logger.info("warming up %s with %d request(s)", base_url, args.warmup)
            await http_load.warm_up(target, args.warmup, args.max_tokens)

        def level(concurrency: int) -> Awaitable[LevelResult]:
            return http_load.run_level(
                target, concurrency, args.requests_per_client, args.max_tokens
            )

        return await _run_levels(args, levels, level), model

    try:
        return asyncio.run(go())
    except Exception as exc:  # httpx.HTTPError and friends: name the server, not a traceback
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(f"--url {base_url}: {type(exc).__name__}: {exc}") from exc


def _bench_engine(args: argparse.Namespace, levels: list[int]) -> tuple[list[LevelResult], str]:
    from chatbot.config import EngineSettings, load
    from chatbot.engine import create_engine

    engine = create_engine(load(EngineSettings, engine=args.engine))
    began = time.perf_counter()
    engine.load()
    logger.info("loaded %s in %.1fs", engine.model_id, time.perf_counter() - began)

    async def go() -> list[LevelResult]:
        if args.warmup:
            await engine_load.warm_up(engine, args.warmup, args.max_tokens)

        def level(concurrency: int) -> Awaitable[LevelResult]:
            return engine_load.run_level(
                engine, concurrency, args.requests_per_client, args.max_tokens
            )

        return await _run_levels(args, levels, level)

    try:
        return asyncio.run(go()), engine.model_id
    finally:
        engine.close()


async def _run_levels(
    args: argparse.Namespace,
    levels: list[int],
    run_level: Callable[[int], Awaitable[LevelResult]],
) -> list[LevelResult]:
    results = []
    for concurrency in levels:
        logger.info(
            "concurrency %d: %d requests", concurrency, concurrency * args.requests_per_client
        )
        results.append(await run_level(concurrency))
        _log_level(results[-1])
    return results


def _log_level(level: LevelResult) -> None:
    logger.info(
        "concurrency %d: %.1f tok/s aggregate, TTFT p95 %s s, %d errors",
        level.concurrency,
        level.aggregate_tokens_per_s,
        f"{level.ttft_p95_s:.2f}" if level.ttft_p95_s is not None else "-",
        level.errors,
    )
