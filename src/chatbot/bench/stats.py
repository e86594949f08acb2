"""What one streamed request measured, and the summary of a concurrency level."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RequestRecord:
    """Times are seconds from the request's start; ``chunk_times`` one per content chunk."""

    client: int
    started: float  # monotonic clock, to place the request inside the level's window
    chunk_times: list[float] = field(default_factory=list)
    completion_tokens: int | None = None  # from the server's usage, when it sends one
    duration: float = 0.0
    error: str | None = None

    @property
    def tokens(self) -> int:
        """Generated tokens: the server's count, else the number of streamed content chunks."""
        if self.completion_tokens is not None:
            return self.completion_tokens
        return len(self.chunk_times)

    @property
    def ttft(self) -> float | None:
        return self.chunk_times[0] if self.chunk_times else None

    @property
    def inter_token(self) -> list[float]:
        """Gaps between chunks, spread over the tokens they carried."""
        times = self.chunk_times
        if len(times) < 2:
            return []
        gaps = [b - a for a, b in itertools.pairwise(times)]
        per_chunk = max(1.0, (self.tokens - 1) / len(gaps)) if self.tokens > 1 else 1.0
        return [g / per_chunk for g in gaps]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class LevelResult:
    """One concurrency level: latencies in seconds, throughputs per second."""

    concurrency: int
    requests: int
    errors: int
    wall_s: float
    total_tokens: int
    aggregate_tokens_per_s: float
    requests_per_s: float
    per_client_tokens_per_s: list[float]
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    itl_p50_s: float | None
    itl_p95_s: float | None
    mean_tokens_per_request: float
    error_samples: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarise(concurrency: int, records: Sequence[RequestRecord], wall_s: float) -> LevelResult:
    ok = [r for r in records if r.error is None]
    failed = [r for r in records if r.error is not None]
    tokens = sum(r.tokens for r in ok)
    ttfts = [t for r in ok if (t := r.ttft) is not None]
    gaps = [g for r in ok for g in r.inter_token]
    per_client: list[float] = []
    for client in sorted({r.client for r in records}):
        mine = [r for r in ok if r.client == client]
        busy = sum(r.duration for r in mine)
        per_client.append(sum(r.tokens for r in mine) / busy if busy > 0 else 0.0)
    wall = max(wall_s, 1e-9)
    return LevelResult(
        concurrency=concurrency,
        requests=len(records),
        errors=len(failed),
        wall_s=wall_s,
        total_tokens=tokens,
        aggregate_tokens_per_s=tokens / wall,
        requests_per_s=len(ok) / wall,
        per_client_tokens_per_s=per_client,
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p95_s=percentile(ttfts, 95),
        itl_p50_s=percentile(gaps, 50),
        itl_p95_s=percentile(gaps, 95),
        mean_tokens_per_request=tokens / len(ok) if ok else 0.0,
        error_samples=sorted({r.error for r in failed if r.error})[:5],
    )
