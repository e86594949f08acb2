"""Prometheus metrics, one registry per app so two apps (or tests) never share counters."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST

_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_ITL_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    """The backend's metrics; the names are part of the operations interface."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "chatbot_http_requests",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "chatbot_time_to_first_token_seconds",
            "From the request's arrival to its first generated text.",
            ("endpoint",),
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.inter_token_latency = Histogram(
            "chatbot_inter_token_latency_seconds",
            "Time between two consecutive text chunks of one generation.",
            ("endpoint",),
            buckets=_ITL_BUCKETS,
            registry=self.registry,
        )
        self.tokens_generated = Counter(
            "chatbot_tokens_generated",
            "Completion tokens generated (as reported by the engine).",
            ("endpoint",),
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "chatbot_prompt_tokens",
            "Prompt tokens processed.",
            ("endpoint",),
            registry=self.registry,
        )
        self.tokens_after_cancel = Counter(
            "chatbot_tokens_after_cancel",
            "Text chunks the engine produced after a generation was cancelled (at most a few).",
            registry=self.registry,
        )
        self.cancelled = Counter(
            "chatbot_generations_cancelled",
            "Generations cancelled, by reason (disconnect, timeout, shutdown).",
            ("reason",),
            registry=self.registry,
        )
        self.rejected = Counter(
            "chatbot_requests_rejected",
            "Requests refused by admission control (429) or during a drain (503).",
            ("reason",),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "chatbot_requests_in_flight",
            "Requests holding a generation place.",
            registry=self.registry,
        )
        self.queued = Gauge(
            "chatbot_requests_queued",
            "Requests waiting for a generation place.",
            registry=self.registry,
        )
        self.ready = Gauge(
            "chatbot_ready", "1 when the model is loaded and warm.", registry=self.registry
        )
        self.http_active = Gauge(
            "chatbot_http_requests_active",
            "HTTP requests being served now, probes excluded: what a drain waits for.",
            registry=self.registry,
        )

    def watch(
        self,
        in_flight: Callable[[], float],
        queued: Callable[[], float],
        ready: Callable[[], float],
        http_active: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """Gauges read live values at scrape time instead of being kept in step by hand."""
        self.in_flight.set_function(in_flight)
        self.queued.set_function(queued)
        self.ready.set_function(ready)
        self.http_active.set_function(http_active)

    def render(self) -> bytes:
        return generate_latest(self.registry)
