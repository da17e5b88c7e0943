"""``POST /v1/telemetry``: batches of events from browsers, stored durably before the answer.

Contract (what the SDK's HTTP sink relies on):

* Body: a JSON array of at most ``settings.telemetry_max_events`` (500) events and
  ``settings.telemetry_max_bytes`` (1 MiB). ``Content-Type`` may be ``application/json`` or
  ``text/plain`` (what ``navigator.sendBeacon`` sends for a string, and a CORS "simple" request, so
  no preflight from other origins) or absent; anything else -> 415.
* ``200 {"accepted": n, "dropped": m, "errors": [{"index": i, "error": "..."}]}`` — sent only after
  the store committed the accepted events. Events failing the schema are dropped one by one and
  reported (the first 20). If every event of a non-empty batch is bad, nothing is stored and the
  answer is ``400`` with the same body plus ``"error"``.
* ``?batch=<key>`` (optional, the SDK always sends one): an idempotency key. A batch whose key
  was stored before (by any instance on the same database) is not stored again; the answer is the
  same 200 with ``"duplicate": true``, so a client retrying after a lost answer loses nothing and
  counts nothing twice.
* ``400 {"error": ...}`` malformed JSON or not an array; ``413`` too many bytes or events;
  ``429`` with ``Retry-After`` when the client exceeds its token bucket (``?client=<id>``, the SDK's
  random client id: ``telemetry_client_rate`` events/s, ``telemetry_client_burst`` deep) or its
  address exceeds the per-address ceiling (``telemetry_rate``, ``telemetry_burst``), so browsers
  behind one proxy no longer share one bucket; ``503`` when the database fails (retry).
* Events about models or versions the registry does not know are dropped and counted
  (``unknown`` in the answer, ``browserml_telemetry_events_unknown{model}``), and unknown label
  values are rolled up as ``other`` (:mod:`..telemetry.scope`); each batch records which client
  and address (hashed) sent it, so stats can say how many distinct clients an event count is from.

Validation, the fold into rollup deltas and the encoding of what is stored run in validator
processes (``settings.telemetry_validators``, :mod:`..telemetry.batch`): they are ~80 % of ingest's
Python time, and in the server's own process they would cap it at one core's worth of GIL.
The store is blocking (sqlite3 / psycopg), so batches run on a dedicated writer pool sized by the
store (one thread for SQLite, whose single writer connection then never waits on a lock; one by
default for PostgreSQL, ``telemetry_pg_writers``), keeping the event loop free to parse the next
requests while a commit fsyncs.
**Group commit:** batches that arrive while every writer is busy wait in a queue and the next free
writer stores all of them in one transaction, so under load one fsync (and one set of rollup
upserts) serves many requests; each request is still answered only after its own events commit.
Retention runs on the same pool in small chunks, so it interleaves with ingest instead of blocking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import multiprocessing
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..settings import Settings
from ..telemetry.batch import Prepared, Received, exit_with_parent, receive
from ..telemetry.schema import BatchShapeError
from ..telemetry.scope import Scope
from ..telemetry.store import TelemetryStore
from .metrics import Metrics

log = logging.getLogger("browserml.telemetry")

ACCEPTED_TYPES = ("", "application/json", "text/plain")
# ``?batch=<key>``: the SDK's idempotency key for one batch (a UUID); retries reuse it (issue 20).
BATCH_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


class Buckets(Protocol):
    """Token buckets by key: the one operation a limiter needs, so their state can live in this
    process (:class:`RateLimiter`) or be shared by several servers (e.g. in PostgreSQL)."""

    def take(self, key: str, cost: float, now: float | None = None) -> float:
        """Take ``cost`` tokens from ``key``'s bucket and return 0, or return the seconds until
        they would be there (taking nothing)."""


class RateLimiter:
    """Per-client token buckets: ``rate`` tokens/s, at most ``burst`` banked; one token per event.

    At most ``max_clients`` buckets are kept (least recently used evicted), so a flood of spoofed
    clients cannot grow memory without bound; an evicted client simply starts with a full bucket."""

    def __init__(self, rate: float, burst: float, max_clients: int = 100_000) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self.buckets: OrderedDict[str, list[float]] = OrderedDict()

    def take(self, client: str, cost: float, now: float | None = None) -> float:
        """Given a client and a cost, take the tokens and return 0, or return the seconds to wait
        until they would be there (taking nothing). A rate of 0 disables the limit."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        bucket = self.buckets.get(client)
        if bucket is None:
            bucket = self.buckets[client] = [self.burst, now]
            if len(self.buckets) > self.max_clients:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(client)
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= cost:
            bucket[0] -= cost
            return 0.0
        return (min(cost, self.burst) - bucket[0]) / self.rate


class TelemetryLimiter:
    """Per-client buckets within a per-address ceiling (issue 17).

    A batch with a client id first takes from that client's bucket (so one noisy page cannot
    use up what the other browsers behind the same proxy or NAT may send), then from its
    address's; a batch without one only from its address's. Both are :class:`Buckets`."""

    def __init__(self, clients: Buckets, addresses: Buckets, enabled: bool = True) -> None:
        self.clients, self.addresses, self.enabled = clients, addresses, enabled

    def take(self, address: str, client: str | None, cost: float) -> float:
        """Given who sends and how many events, return 0 (taken) or the seconds to wait."""
        if not self.enabled:
            return 0.0
        if client is not None:
            wait = self.clients.take(client, cost)
            if wait:
                return wait
        return self.addresses.take(address, cost)


class TelemetryService:
    """The ingest side of the server: store, writer pool, rate limiter, metrics, retention, and
    the registry's models (:class:`..telemetry.scope.Scope`) that events must be about."""

    def __init__(self, settings: Settings, store: TelemetryStore, metrics: Metrics,
                 known: Callable[[], Mapping[str, Mapping[int, frozenset[str]]]] | None = None) -> None:
        self.settings, self.store, self.metrics = settings, store, metrics
        self.writer = ThreadPoolExecutor(max_workers=store.writers, thread_name_prefix="telemetry-writer")
        self.limiter = TelemetryLimiter(
            RateLimiter(settings.telemetry_client_rate, settings.telemetry_client_burst),
            RateLimiter(settings.telemetry_rate, settings.telemetry_burst),
            enabled=settings.telemetry_rate > 0,
        )
        self._known = known
        self._scope: Scope | None = None
        self._scope_at = 0.0
        self._scope_lock = asyncio.Lock()
        self._retention: asyncio.Task[None] | None = None
        self._queue: list[tuple[Prepared, asyncio.Future[bool]]] = []
        self._flushers = 0
        self.validators = _validator_pool(settings.telemetry_validators)

    def forget_scope(self) -> None:
        """The registry changed (a publish or delete through this server): re-read it next time."""
        self._scope_at = 0.0

    async def scope(self) -> Scope | None:
        """Return the registry's models as of at most ``telemetry_scope_refresh_s`` ago (None
        when the service has no registry: tests of the store alone)."""
        if self._known is None:
            return None
        if time.monotonic() - self._scope_at > self.settings.telemetry_scope_refresh_s:
            async with self._scope_lock:
                if time.monotonic() - self._scope_at > self.settings.telemetry_scope_refresh_s:
                    try:
                        known = await asyncio.get_running_loop().run_in_executor(None, self._known)
                    except Exception:
                        if self._scope is None:
                            raise  # nothing known yet: refuse (503) rather than accept anything
                        log.warning("cannot re-read the registry's models; keeping the last list")
                        known = self._scope.models
                    self._scope, self._scope_at = Scope(known), time.monotonic()
        return self._scope

    async def receive(self, body: bytes, received_ms: int) -> Received:
        """Validate, screen, fold and encode one body (:func:`..telemetry.batch.receive`) in a
        validator process when there are some, else here. A validator that died is replaced, and
        the body is handled here meanwhile: a crash costs time, never a batch."""
        max_events = self.settings.telemetry_max_events
        scope = await self.scope()
        pool = self.validators
        if pool is None:
            return receive(body, max_events, received_ms, scope)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                pool, receive, body, max_events, received_ms, scope)
        except BrokenProcessPool:
            log.warning("a telemetry validator process died; starting a new pool")
            if self.validators is pool:
                self.metrics.validator_restarts.inc()
                pool.shutdown(wait=False, cancel_futures=True)
                self.validators = _validator_pool(self.settings.telemetry_validators)
            return receive(body, max_events, received_ms, scope)

    async def store_batch(self, batch: Prepared) -> bool:
        """Queue one prepared batch for the next group commit; return once it is committed:
        True, or False when its idempotency key was already stored (raise what the store raised
        if that commit failed)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, future))
        if self._flushers < self.store.writers:
            self._flushers += 1
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        """Drain the queue, committing everything queued so far in one transaction per round."""
        try:
            while self._queue:
                group, self._queue = self._queue, []
                try:
                    fresh = await self.write(self.store.commit_each, [batch for batch, _ in group])
                except Exception as exc:
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), new in zip(group, fresh, strict=True):
                    if not future.done():
                        future.set_result(new)
        finally:
            self._flushers -= 1

    async def write(self, fn: Any, *args: Any) -> Any:
        """Run a blocking store call on the writer pool."""
        return await asyncio.get_running_loop().run_in_executor(self.writer, fn, *args)

    def start(self) -> None:
        """Start the retention loop (call from the app's lifespan)."""
        self._retention = asyncio.get_running_loop().create_task(self._retention_loop())

    async def stop(self) -> None:
        """Stop retention, finish queued writes, close the store."""
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        self.writer.shutdown(wait=True)
        if self.validators is not None:
            self.validators.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    async def purge(self) -> int:
        """Run retention until nothing old is left, one short transaction per chunk; return rows."""
        s = self.settings
        total = 0
        while True:
            now_ms = int(time.time() * 1000)
            deleted = await self.write(
                self.store.purge_chunk, now_ms, s.telemetry_retention_days,
                s.telemetry_rollup_retention_days, s.telemetry_retention_chunk,
            )
            total += deleted
            self.metrics.retention_deleted.inc(deleted)
            if deleted == 0:
                return total

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.purge()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.db_errors.labels("retention").inc()
                log.exception("telemetry retention failed; will retry")
            await asyncio.sleep(self.settings.telemetry_retention_interval_s)


def _validator_pool(processes: int) -> ProcessPoolExecutor | None:
    """Return a pool of ``processes`` validator processes (None for 0: validate in the server).

    ``spawn``, not ``fork``: the server has threads (writers, uvicorn) that a fork would copy
    mid-flight. Workers start on the first batch and import only the telemetry modules."""
    if processes <= 0:
        return None
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def ingest(request: Request) -> Response:
    """``POST /v1/telemetry``: validate, store durably, then answer (see the module contract)."""
    service: TelemetryService = request.app.state.telemetry
    settings, metrics = service.settings, service.metrics
    address = request.client.host if request.client else "unknown"
    client = request.query_params.get("client")
    if client is not None and CLIENT_ID.fullmatch(client) is None:
        client = None

    wait = service.limiter.take(address, client, 1)
    if wait:
        return _limited(metrics, wait)
    key = request.query_params.get("batch")
    if key is not None and BATCH_KEY.fullmatch(key) is None:
        metrics.batches.labels("bad_request").inc()
        return _error(400, "batch key must be 1-64 characters of A-Z a-z 0-9 _ . : -; send a UUID")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_TYPES:
        metrics.batches.labels("bad_request").inc()
        return _error(415, f"content type {content_type!r} not accepted; send application/json or text/plain")
    limit = settings.telemetry_max_bytes
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        metrics.batches.labels("too_large").inc()
        return _error(413, f"body of {length} bytes exceeds the {limit} byte limit")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                metrics.batches.labels("too_large").inc()
                return _error(413, f"body exceeds the {limit} byte limit")
    except ClientDisconnect:
        return Response(status_code=400)

    try:
        received = await service.receive(bytes(body), int(time.time() * 1000))
    except BatchShapeError as exc:
        metrics.batches.labels("bad_request").inc()
        return _error(400, str(exc))
    except OverflowError as exc:
        metrics.batches.labels("too_large").inc()
        return _error(413, str(exc))
    except Exception:
        metrics.db_errors.labels("receive").inc()
        log.exception("telemetry batch could not be screened")
        return JSONResponse({"error": "telemetry unavailable; retry later"}, status_code=503,
                            headers={"Retry-After": "5"})

    batch = received.batch
    accepted = batch.n if batch else 0
    metrics.events_dropped.inc(received.dropped)
    unknown = sum(received.unknown.values())
    for model, n in received.unknown.items():
        metrics.events_unknown.labels(model).inc(n)
    report = {"accepted": accepted, "dropped": received.dropped, "errors": received.errors}
    if unknown:
        report["unknown"] = unknown
    if batch is None:
        if not received.dropped:
            metrics.batches.labels("stored").inc()
            return JSONResponse(report)
        metrics.batches.labels("all_dropped").inc()
        return JSONResponse({"error": "no valid event in the batch", **report}, status_code=400)
    if accepted > 1:
        wait = service.limiter.take(address, client, accepted - 1)
        if wait:
            return _limited(metrics, wait)
    source = hashlib.sha256(address.encode()).hexdigest()[:16]
    batch = dataclasses.replace(batch, client=client or f"@{source}", source=source, key=key)
    started = time.perf_counter()
    try:
        fresh = await service.store_batch(batch)
    except Exception:
        metrics.db_errors.labels("ingest").inc()
        metrics.batches.labels("db_error").inc()
        log.exception("telemetry batch could not be stored")
        return JSONResponse(
            {"error": "telemetry store unavailable; retry later"}, status_code=503,
            headers={"Retry-After": "5"},
        )
    metrics.commit_seconds.observe(time.perf_counter() - started)
    if not fresh:  # an earlier attempt of this batch was committed: acknowledge it again
        metrics.batches.labels("duplicate").inc()
        return JSONResponse({**report, "duplicate": True})
    metrics.events_accepted.inc(accepted)
    metrics.batches.labels("stored").inc()
    return JSONResponse(report)


def _limited(metrics: Metrics, wait: float) -> JSONResponse:
    metrics.batches.labels("rate_limited").inc()
    seconds = max(1, int(wait + 0.999))
    return JSONResponse(
        {"error": f"rate limit exceeded; retry in {seconds} s"}, status_code=429,
        headers={"Retry-After": str(seconds)},
    )


def routes() -> list[Route]:
    """Return the telemetry ingest route."""
    return [Route("/v1/telemetry", ingest, methods=["POST"])]
