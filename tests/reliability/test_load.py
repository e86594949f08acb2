"""Load against a real ``chatbot serve``: soak, overload and a disconnect storm.

Short in ``make test``; ``make soak`` sets CHATBOT_SOAK_SECONDS / CHATBOT_SOAK_CLIENTS for the
long runs. Figures go to test-artifacts/reliability/*.json and from there to RELIABILITY.md.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.fixtures.prompts import LONG_PROMPT
from tests.fixtures.servers import BackendProcess
from tests.reliability.support import (
    StreamResult,
    chat_body,
    env_float,
    env_int,
    metric,
    record,
    sample,
    soak_clients,
    soak_seconds,
    stream_sse,
    wait_idle,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

CHAT = "/v1/chat/completions"
POOL_SLACK = 4
SOAK_WINDOWS = 3
ONE_OFF_FACTOR = 4  # a single high-water-mark step may reach this many times the tolerance
PROMPTS = ("Hi", "Name a colour.", "What is 2+2?", "Say something kind.", "Tell me a fact.")


def _load_env(clients: int) -> dict[str, str]:
    return {
        "CHATBOT_MAX_CONCURRENT_REQUESTS": str(min(clients, 32)),
        "CHATBOT_MAX_QUEUED_REQUESTS": str(max(64, clients * 2)),
        "CHATBOT_MAX_BATCH_SIZE": str(min(clients, 32)),
        "CHATBOT_MAX_TOKENS_CAP": "512",
        "CHATBOT_DEFAULT_MAX_TOKENS": "16",
    }


@pytest.fixture(scope="module")
def loaded_backend() -> Iterator[BackendProcess]:
    """A backend on the default engine: the storm measures what its model thread makes after a
    cancel, and how a place frees."""
    with BackendProcess(_load_env(soak_clients())) as backend:
        yield backend


@pytest.fixture(scope="module")
def serving_backend() -> Iterator[BackendProcess]:
    """A backend on the scripted engine: the soak measures the serving pipeline's own leaks.

    HTTP, admission, the reply runner, SSE and the metrics, with no model's caches and
    allocator in the figures; the engines' memory over 1,000 requests is in BENCHMARKS.md.
    The pipeline serves several times more replies per second this way, so a leak of one
    object a request shows sooner.
    """
    env = {**_load_env(soak_clients()), "CHATBOT_ENGINE": "scripted"}
    with BackendProcess({**env, "CHATBOT_SCRIPTED_TOKEN_S": "0.01"}) as backend:
        yield backend


class LoadClients:
    """N threads, each with its own connection, sending streaming chats until told to stop."""

    def __init__(self, url: str, count: int, max_tokens: int) -> None:
        self.url = url
        self.max_tokens = max_tokens
        self.results: list[StreamResult] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)
        ]

    def _run(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as client:
            turn = 0
            while not self._stop.is_set():
                prompt = PROMPTS[(index + turn) % len(PROMPTS)]
                body = chat_body(self.max_tokens, prompt, temperature=0)
                result = stream_sse(client, "POST", CHAT, body)
                with self._lock:
                    self.results.append(result)
                turn += 1

    def run_for(self, seconds: float, at_least: int = 0) -> list[StreamResult]:
        """Run for ``seconds``, and on until ``at_least`` replies are in (a slow, shared CPU)."""
        for thread in self._threads:
            thread.start()
        time.sleep(seconds)
        while len(self.results) < at_least:
            time.sleep(0.5)
        self._stop.set()
        for thread in self._threads:
            thread.join(180)
        assert not any(t.is_alive() for t in self._threads), "a client hung"
        return self.results


def _check_all_complete(results: list[StreamResult]) -> None:
    statuses = Counter(r.status for r in results)
    assert statuses == {200: len(results)}, (statuses, [r.error for r in results if r.error][:3])
    incomplete = [r for r in results if not r.done or r.finish_reason() is None]
    assert not incomplete, incomplete[0].summary()


def test_soak_streaming_clients_memory_threads_and_fds_stay_flat(
    serving_backend: BackendProcess,
) -> None:
    url, pid = serving_backend.url, serving_backend.process.pid
    clients, seconds = soak_clients(), soak_seconds()
    max_tokens = env_int("CHATBOT_SOAK_MAX_TOKENS", 16)
    # Measured on a model: RssAnon rises by about 1 % over the first ~300 replies (the
    # allocator and caches settling), then by under 0.1 % per 650 replies. The scripted engine
    # serves about 40 replies a second here, so 15 s of warm-up covers the first part twice.
    warmup_s = max(15.0, seconds / 5)
    # Warm-up: caches, thread pools and the allocator's arenas reach their working size.
    # Every batch size and reply length has been seen once the warm-up has enough replies.
    warm = LoadClients(url, clients, max_tokens).run_for(warmup_s, at_least=20 * clients)
    _check_all_complete(warm)
    wait_idle(url)
    time.sleep(1)
    samples = [sample(pid)]
    requests_before = metric(url, "chatbot_http_requests_total")

    # The measured time in equal windows, a sample after each: a leak grows the heap in every
    # window, while the allocator reaching a new high-water mark (a rarer batch shape) is one
    # step in one window. A CI run on a slow, shared machine measured +3.1 % in one step that
    # way after a warm-up of 168 replies, and 0.005 % on the same code in the run before.
    results: list[StreamResult] = []
    for _ in range(SOAK_WINDOWS):
        results += LoadClients(url, clients, max_tokens).run_for(seconds / SOAK_WINDOWS)
        wait_idle(url)
        time.sleep(1)
        samples.append(sample(pid))
    before, after = samples[0], samples[-1]

    _check_all_complete(results)
    errors = [  # /readyz answers 503 while the model loads: that one is by design
        line
        for line in httpx.get(f"{url}/metrics").text.splitlines()
        if line.startswith("chatbot_http_requests_total")
        and 'status="5' in line
        and "/readyz" not in line
    ]
    assert not errors, errors
    step_pct = [
        100.0 * (later.rss_anon_kb - earlier.rss_anon_kb) / before.rss_anon_kb
        for earlier, later in itertools.pairwise(samples)
    ]
    # The growth a steady leak would make over the whole time: the median window's, times the
    # windows. One step in one window does not move the median.
    steady_pct = statistics.median(step_pct) * SOAK_WINDOWS
    growth_pct = 100.0 * (after.rss_anon_kb - before.rss_anon_kb) / before.rss_anon_kb
    tolerance = env_float("CHATBOT_SOAK_RSS_GROWTH_PCT", 2.0)
    latencies = sorted(r.elapsed_s for r in results)
    record(
        "soak",
        {
            "clients": clients,
            "warmup_s": warmup_s,
            "measured_s": seconds,
            "windows": SOAK_WINDOWS,
            "max_tokens": max_tokens,
            "requests": len(results),
            "requests_warmup": len(warm),
            "http_requests_counted": metric(url, "chatbot_http_requests_total") - requests_before,
            "non_200": 0,
            "incomplete": 0,
            "reply_p50_s": round(statistics.median(latencies), 3),
            "reply_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
            "rss_anon_kb_samples": [s.rss_anon_kb for s in samples],
            "rss_anon_window_growth_pct": [round(p, 3) for p in step_pct],
            "rss_anon_steady_growth_pct": round(steady_pct, 3),
            "rss_anon_growth_pct": round(growth_pct, 3),
            "threads_before": before.threads,
            "threads_after": after.threads,
            "fds_before": before.fds,
            "fds_after": after.fds,
        },
    )
    assert steady_pct < tolerance, ("grows in every window", samples)
    # A one-off step is allowed, not an unbounded one.
    assert growth_pct < ONE_OFF_FACTOR * tolerance, ("one large step", samples)
    # Thread pools (AnyIO's, the engine's) may add a worker when the load shifts; a leak would
    # add one per request (hundreds here), so a small slack still catches it.
    assert after.threads <= before.threads + POOL_SLACK, (before, after, len(results))
    assert after.fds <= before.fds + POOL_SLACK, (before, after, len(results))


# A reply that runs on for hundreds of tokens, so every abort lands mid-reply on any engine.

LONG_BODY = chat_body(400, LONG_PROMPT)


def test_disconnect_storm_stops_generation_frees_places_and_ttft_recovers(
    loaded_backend: BackendProcess,
) -> None:
    url = loaded_backend.url
    aborts = env_int("CHATBOT_STORM_CLIENTS", 100)
    wave = env_int("CHATBOT_STORM_WAVE", 10)
    wait_idle(url)
    idle_ttft = _ttft(url)
    cancelled0 = metric(url, 'chatbot_generations_cancelled_total{reason="disconnect"}')
    extra0 = metric(url, "chatbot_tokens_after_cancel_total")
    generated0 = metric(url, "chatbot_tokens_generated_total")

    # Singles first: each abort's own count of tokens after the cancel.
    singles = min(10, aborts)
    per_abort: list[float] = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(singles):
            before = metric(url, "chatbot_tokens_after_cancel_total")
            seen = stream_sse(
                client, "POST", CHAT, chat_body(400, LONG_PROMPT), stop_after_content=True
            )
            assert seen.status == 200 and seen.first_event_s is not None, seen.summary()
            wait_idle(url)
            _settle(url)
            per_abort.append(metric(url, "chatbot_tokens_after_cancel_total") - before)

    # Then the storm: waves of clients that all leave mid-stream at the same moment.
    per_wave: list[float] = []
    remaining = aborts - singles
    while remaining > 0:
        size = min(wave, remaining)
        remaining -= size
        before = metric(url, "chatbot_tokens_after_cancel_total")
        results = _abort_together(url, size)
        assert all(r.status == 200 and r.first_event_s is not None for r in results), [
            r.summary() for r in results if r.first_event_s is None
        ][:2]
        wait_idle(url)
        _settle(url)
        per_wave.append((metric(url, "chatbot_tokens_after_cancel_total") - before) / size)

    cancelled = metric(url, 'chatbot_generations_cancelled_total{reason="disconnect"}') - cancelled0
    extra = metric(url, "chatbot_tokens_after_cancel_total") - extra0
    generated = metric(url, "chatbot_tokens_generated_total") - generated0
    after_ttft = _ttft(url)
    figures = {
        "aborts": aborts,
        "wave_size": wave,
        "cancelled_disconnect": cancelled,
        "tokens_after_cancel_total": extra,
        "tokens_after_cancel_mean": round(extra / aborts, 3),
        "tokens_after_cancel_max_single": max(per_abort),
        "tokens_after_cancel_max_wave_mean": round(max(per_wave, default=0.0), 3),
        "tokens_generated_during_storm": generated,
        "in_flight_after": metric(url, "chatbot_requests_in_flight"),
        "ttft_idle_s": round(idle_ttft, 3),
        "ttft_after_s": round(after_ttft, 3),
    }
    record("disconnect_storm", figures)
    assert cancelled == aborts
    assert extra / aborts <= 2, figures
    assert max(per_abort) <= 2, figures
    assert max(per_wave, default=0.0) <= 2, figures
    assert generated < aborts * 400 / 4  # nobody ran on to its max_tokens
    # No generation leaked: no place is held, and the next request is answered (its first
    # token time, beside the idle one, is a figure in the record, not a pass mark).
    assert figures["in_flight_after"] == 0
    assert metric(url, "chatbot_requests_queued") == 0, figures


def _settle(url: str) -> None:
    """Until the model thread has ended the step the cancel met: a late token of that step is
    counted by then. A one-token reply, answered whole, runs through the same model thread
    after it (a wait for an event, not a guess at how long a step takes)."""
    body = {**chat_body(1), "stream": False, "temperature": 0}
    answered = httpx.post(f"{url}{CHAT}", json=body, timeout=120)
    assert answered.status_code == 200, answered.text


def _abort_together(url: str, size: int) -> list[StreamResult]:
    results: list[StreamResult] = []
    lock = threading.Lock()
    barrier = threading.Barrier(size)

    def one() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            barrier.wait(30)
            result = stream_sse(
                client, "POST", CHAT, chat_body(400, LONG_PROMPT), stop_after_content=True
            )
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def _ttft(url: str, runs: int = 5) -> float:
    """Median time to the first text of a short streaming chat, one request at a time."""
    times = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(runs):
            result = stream_sse(client, "POST", CHAT, chat_body(4, temperature=0))
            assert result.done and result.first_event_s is not None, result.summary()
            times.append(result.first_event_s)
    return statistics.median(times)


def test_overload_exactly_k_get_429_with_retry_after_promptly(
    start_backend: Callable[..., BackendProcess],
) -> None:
    places, queue, extra = 2, 2, env_int("CHATBOT_OVERLOAD_EXTRA", 3)
    backend = start_backend(
        CHATBOT_MAX_CONCURRENT_REQUESTS=str(places),
        CHATBOT_MAX_QUEUED_REQUESTS=str(queue),
        CHATBOT_MAX_TOKENS_CAP="64",
    )
    total = places + queue + extra
    results: list[StreamResult] = []
    lock = threading.Lock()
    barrier = threading.Barrier(total)

    def one(index: int) -> None:
        with httpx.Client(base_url=backend.url, timeout=120) as client:
            client.get("/healthz")  # connect first, so the requests really arrive together
            barrier.wait(30)
            # A story runs to its 48 tokens: the first two hold their places while all arrive.
            result = stream_sse(client, "POST", CHAT, chat_body(48, LONG_PROMPT))
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(total)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    refused = [r for r in results if r.status == 429]
    served = [r for r in results if r.status == 200]
    # The queued ones are the served that started last: they began when a place freed.
    starts = sorted(r.first_event_s for r in served if r.first_event_s is not None)
    first_queued_start = starts[places] if len(starts) > places else None
    figures = {
        "max_concurrent": places,
        "max_queued": queue,
        "simultaneous": total,
        "refused_429": len(refused),
        "served_200": len(served),
        "slowest_429_s": round(max((r.elapsed_s for r in refused), default=0.0), 3),
        "retry_after": sorted({r.headers.get("retry-after", "") for r in refused}),
        "slowest_served_s": round(max((r.elapsed_s for r in served), default=0.0), 3),
        "first_queued_start_s": None
        if first_queued_start is None
        else round(first_queued_start, 3),
    }
    record("overload", figures)
    assert len(refused) == extra, figures
    assert len(served) == places + queue, figures
    for response in refused:
        assert int(response.headers["retry-after"]) >= 1
        assert '"rate_limit_error"' in (response.error or "")
        # Refused at once, not after queueing: answered before any queued request got its
        # place (a time of this machine's own, not a fixed number of seconds: on a loaded CI
        # runner the event loop alone can take 2 s for seven requests beside two prefills).
        assert first_queued_start is not None, figures
        assert response.elapsed_s < first_queued_start, figures
    assert all(r.done and r.finish_reason() in ("length", "stop") for r in served), figures
    assert metric(backend.url, 'chatbot_requests_rejected_total{reason="overloaded"}') == extra
