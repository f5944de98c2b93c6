"""The server's own state for operators: Prometheus metrics at /metrics, liveness at /health (and vLLM's /ping),
the version at /version, and a count of every response by status (refusals logged). Metrics carry vLLM's names
under the `s1:` prefix, and again under `vllm:` (with vLLM's `model_name` label) for dashboards built for vLLM."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from s1.core.version import __version__
from s1.serve.responses import Health, Version
from s1.serve.running import GONE
from s1.serve.state import Served, served

log = logging.getLogger("s1.serve")
router = APIRouter()


class Metrics:
    """Prometheus text at /metrics, with vLLM's metric names under the `s1:` prefix."""

    def __init__(self, scheduler, model_name: str = ""):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.vllm = CollectorRegistry()
        self.vllm.register(_Renamed(self.registry, "s1:", "vllm:", {"model_name": model_name}))
        running = Gauge("s1:num_requests_running", "Sequences being decoded.", registry=self.registry)
        waiting = Gauge("s1:num_requests_waiting", "Sequences waiting for a slot.", registry=self.registry)
        running.set_function(lambda: scheduler.load[0])
        waiting.set_function(lambda: scheduler.load[1])
        self.requests = Counter("s1:requests", "HTTP requests by status code.", ["status"], registry=self.registry)
        self.prompt_tokens = Counter("s1:prompt_tokens", "Prompt tokens processed.", registry=self.registry)
        # what the engine computed of those: a prefix a slot kept from an earlier request (a re-prefill round's
        # shared start) is not computed again; vLLM reports its prefix-cache hits apart in the same way
        self.prefill_tokens = Counter(
            "s1:prefill_tokens", "Prompt tokens computed (a kept prefix not counted).", registry=self.registry
        )
        self.generation_tokens = Counter("s1:generation_tokens", "Tokens generated.", registry=self.registry)
        self.ttft = Histogram(
            "s1:time_to_first_token_seconds",
            "Time to first generated token.",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.latency = Histogram(
            "s1:e2e_request_latency_seconds",
            "Request latency.",
            registry=self.registry,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.recent: deque[tuple[float, int]] = deque()
        rate = Gauge(
            "s1:generation_tokens_per_second", "Tokens generated per second over the last 10 s.", registry=self.registry
        )
        rate.set_function(self._rate)

    def tokens(self, n: int) -> None:
        self.generation_tokens.inc(n)
        now = time.monotonic()
        self.recent.append((now, n))

    def _rate(self) -> float:
        now = time.monotonic()
        while self.recent and self.recent[0][0] < now - 10:
            self.recent.popleft()
        return sum(n for _, n in self.recent) / 10.0

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry) + generate_latest(self.vllm)


class _Renamed:
    """Every metric of a registry again under another prefix, with extra labels (vLLM's names for dashboards)."""

    def __init__(self, registry, old: str, new: str, labels: dict[str, str]):
        self.registry, self.old, self.new, self.labels = registry, old, new, labels

    def collect(self):
        from prometheus_client.metrics_core import Metric
        from prometheus_client.samples import Sample

        for family in self.registry.collect():
            renamed = Metric(family.name.replace(self.old, self.new, 1), family.documentation, family.type)
            renamed.samples = [
                Sample(s.name.replace(self.old, self.new, 1), {**self.labels, **s.labels}, s.value, s.timestamp)
                for s in family.samples
            ]
            yield renamed


class StatusCounter:
    """Counts every response by status and logs refusals. Plain ASGI on purpose: Starlette's
    `BaseHTTPMiddleware` (`@app.middleware`) hides a client's disconnect from the endpoint, so a
    non-streaming client that gave up would keep its slot decoding to the end. An exception no handler took
    becomes Starlette's 500 outside this middleware: it is counted here as the 500 it will be."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        started = False

        def count(status: int) -> None:
            self.metrics.requests.labels(str(status)).inc()
            if status >= 400 and status != GONE:  # a client that went away has its request's own line (running.py)
                log.info("%s %s status=%d", scope["method"], scope["path"], status)

        async def counting_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                count(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            if not started:
                count(500)
            raise


@router.get("/health")
async def health() -> JSONResponse:
    return Health().response()


@router.api_route("/ping", methods=["GET", "POST"])
async def ping() -> JSONResponse:
    """vLLM's liveness route (SageMaker's convention)."""
    return Health().response()


@router.get("/version")
async def version() -> JSONResponse:
    return Version(version=__version__).response()


@router.get("/metrics")
async def prometheus(state: Annotated[Served, Depends(served)]) -> Response:
    return Response(state.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")
