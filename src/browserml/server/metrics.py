"""Prometheus ``/metrics`` for the server itself: requests, latencies, telemetry ingest, DB errors.

Each app gets its own :class:`prometheus_client.CollectorRegistry` (not the process-global one), so
several apps in one process — tests, benchmarks — never collide on metric names. Request metrics
are labelled by a small fixed set of *surfaces* (``telemetry``, ``stats``, ``manifest``, ``blobs``
…), never by raw path, so label cardinality stays bounded whatever clients request. The
middleware is pure ASGI and caches its labelled children: counting a request costs two dict
lookups, a counter increment and a histogram observation (a few µs), which matters on the blob
path that is benchmarked against nginx.

``/metrics`` needs the admin token unless ``settings.metrics_public``; Prometheus sends it with
``authorization: {credentials_file: <data-dir>/admin-token}`` in its scrape config.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import is_authorized, unauthorized

# Path prefix -> surface label; first match wins, anything else is "other".
SURFACES = (
    ("/v1/telemetry", "telemetry"),
    ("/v1/stats", "stats"),
    ("/v1/blobs/", "blobs"),
    ("/v1/models/", "models"),
    ("/v1/models", "models"),
    ("/metrics", "metrics"),
    ("/sdk/", "sdk"),
    ("/vendor/", "vendor"),
    ("/demo", "demo"),
    ("/dashboard", "dashboard"),
)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def surface_of(path: str) -> str:
    """Given a request path, return its bounded surface label."""
    for prefix, name in SURFACES:
        if path.startswith(prefix):
            return name
    return "other"


class Metrics:
    """Every metric the server exports, in one registry owned by one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "browserml_http_requests", "HTTP requests by surface, method and status class.",
            ["surface", "method", "status"], registry=r,
        )
        self.latency = Histogram(
            "browserml_http_request_seconds", "Time to answer a request (until the body is sent).",
            ["surface"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.events_accepted = Counter(
            "browserml_telemetry_events_accepted", "Telemetry events durably stored.", registry=r
        )
        self.events_dropped = Counter(
            "browserml_telemetry_events_dropped", "Telemetry events refused one by one (schema).",
            registry=r,
        )
        self.events_unknown = Counter(
            "browserml_telemetry_events_unknown",
            "Telemetry events dropped because the registry does not know their model or version, "
            "by model ('(unknown)' for every name the registry does not have).", ["model"], registry=r,
        )
        self.batches = Counter(
            "browserml_telemetry_batches", "Telemetry batches by outcome.", ["outcome"], registry=r
        )
        self.commit_seconds = Histogram(
            "browserml_telemetry_commit_seconds", "Time a batch spends in the store (queue + commit).",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.db_errors = Counter(
            "browserml_db_errors", "Database operations that failed.", ["operation"], registry=r
        )
        self.validator_restarts = Counter(
            "browserml_telemetry_validator_restarts",
            "Telemetry validator pools replaced after a worker process died.", registry=r,
        )
        self.retention_deleted = Counter(
            "browserml_telemetry_retention_deleted", "Rows deleted by telemetry retention.", registry=r
        )
        self.blob_fast_path = Counter(
            "browserml_blob_fast_path_requests",
            "Blob requests answered by the fast path (no Origin header); not in the HTTP "
            "histograms, to keep revalidations cheap.", registry=r,
        )
        self._children: dict[tuple[str, str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def observe_request(self, surface: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (surface, method, f"{status // 100}xx")
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(*key)
        child.inc()
        timer = self._latency_children.get(surface)
        if timer is None:
            timer = self._latency_children[surface] = self.latency.labels(surface)
        timer.observe(seconds)


class MetricsMiddleware:
    """Pure-ASGI middleware timing every HTTP request from arrival to the last body byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.observe_request(
                surface_of(scope.get("path", "")), scope.get("method", "GET"), status,
                time.perf_counter() - start,
            )


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the Prometheus text format (admin token unless metrics are public)."""
    app_state = request.app.state
    if not app_state.settings.metrics_public and not is_authorized(request, app_state.admin_token):
        return unauthorized()
    return Response(generate_latest(app_state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def routes() -> list[Route]:
    """Return the ``/metrics`` route."""
    return [Route("/metrics", metrics_endpoint, methods=["GET"])]
