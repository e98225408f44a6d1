"""Prometheus metrics in the text exposition format, written by hand (no extra dependency)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ENDPOINTS = {"/v1/models", "/v1/classify", "/v1/embeddings", "/v1/chat/completions", "/v1/completions", "/health",
             "/metrics"}


class Metrics:
    """Request counts by endpoint and status, a latency histogram, tokens generated, queue depth."""

    def __init__(self, queue_depth: Callable[[], int]):
        self.requests: Counter[tuple[str, int]] = Counter()
        self.buckets: Counter[tuple[str, float]] = Counter()
        self.latency_sum: Counter[str] = Counter()
        self.latency_count: Counter[str] = Counter()
        self.tokens_generated = 0
        self.queue_depth = queue_depth

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        # Unknown paths share one label so scanners cannot grow the series without bound.
        endpoint = endpoint if endpoint in ENDPOINTS else "other"
        self.requests[endpoint, status] += 1
        self.latency_sum[endpoint] += seconds
        self.latency_count[endpoint] += 1
        for bound in BUCKETS:
            if seconds <= bound:
                self.buckets[endpoint, bound] += 1

    def render(self) -> str:
        lines = ["# HELP lmforge_requests_total HTTP requests by endpoint and status.",
                 "# TYPE lmforge_requests_total counter"]
        lines += [f'lmforge_requests_total{{endpoint="{e}",status="{s}"}} {n}' for (e, s),
                  n in sorted(self.requests.items())]
        lines += ["# HELP lmforge_request_seconds Request latency (streams: until the last byte).",
                  "# TYPE lmforge_request_seconds histogram"]
        for e in sorted(self.latency_count):
            lines += [f'lmforge_request_seconds_bucket{{endpoint="{e}",le="{b}"}} {self.buckets[e, b]}' for b in BUCKETS]
            lines += [f'lmforge_request_seconds_bucket{{endpoint="{e}",le="+Inf"}} {self.latency_count[e]}',
                      f'lmforge_request_seconds_sum{{endpoint="{e}"}} {self.latency_sum[e]:.6f}',
                      f'lmforge_request_seconds_count{{endpoint="{e}"}} {self.latency_count[e]}']
        lines += ["# HELP lmforge_tokens_generated_total Completion tokens generated.",
                  "# TYPE lmforge_tokens_generated_total counter",
                  f"lmforge_tokens_generated_total {self.tokens_generated}",
                  "# HELP lmforge_queue_depth Requests waiting for the batch worker.",
                  "# TYPE lmforge_queue_depth gauge", f"lmforge_queue_depth {self.queue_depth()}"]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """ASGI middleware timing every HTTP request and recording its final status."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def record_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.observe(scope["path"], status, time.perf_counter() - start)
