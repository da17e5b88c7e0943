"""Client traffic as browsers make it, for failover runs (issue 20): channel documents, blobs and
telemetry batches, through a load balancer, counting every failure a user would see.

Each worker loops over three requests: ``GET`` the channel document, ``GET`` one of its blobs
(checked against its sha256), ``POST`` a telemetry batch. GETs are sent once — a failure counts,
whatever the cause (the balancer is what must retry them). A telemetry batch behaves as the SDK's
HTTP sink: it carries an idempotency key and, on a network error, 429 or 5xx, is sent again with
the same key until acknowledged (bounded by ``retry_s``). The report lists every acknowledged
key with its event count, so the caller can compare with what the database holds: no event
acknowledged and missing, none stored twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import uuid
from dataclasses import dataclass, field

import httpx


@dataclass
class TrafficReport:
    """What the clients saw."""

    seconds: float = 0.0
    gets: int = 0
    get_failures: list[str] = field(default_factory=list)
    batches: int = 0
    attempts: int = 0
    retried_batches: int = 0
    duplicate_answers: int = 0
    batch_failures: list[str] = field(default_factory=list)
    acknowledged: dict[str, int] = field(default_factory=dict)

    @property
    def events_acknowledged(self) -> int:
        return sum(self.acknowledged.values())

    def summary(self) -> dict[str, object]:
        return {"seconds": round(self.seconds, 2), "gets": self.gets, "get_failures": len(self.get_failures),
                "batches": self.batches, "post_attempts": self.attempts,
                "retried_batches": self.retried_batches, "duplicate_answers": self.duplicate_answers,
                "batch_failures": len(self.batch_failures), "events_acknowledged": self.events_acknowledged}


def telemetry_batch(model: str, version: int, n: int, rng: random.Random) -> bytes:
    """A batch of ``n`` predict events as the SDK's sink sends them."""
    events = [{"type": "predict", "model": model, "version": version, "engine": "tfjs",
               "backend": "wasm", "variant": "uint8", "ms": round(rng.uniform(5, 40), 2),
               "age_ms": round(rng.uniform(0, 5000), 1)} for _ in range(n)]
    return json.dumps(events, separators=(",", ":")).encode()


async def _post_batch(http: httpx.AsyncClient, report: TrafficReport, body: bytes, n: int,
                      retry_s: float) -> None:
    key = str(uuid.uuid4())
    deadline = time.monotonic() + retry_s
    tries = 0
    while True:
        tries += 1
        report.attempts += 1
        try:
            response = await http.post(f"/v1/telemetry?batch={key}", content=body,
                                       headers={"content-type": "text/plain"})
            if response.status_code == 200:
                report.acknowledged[key] = n
                report.batches += 1
                report.retried_batches += tries > 1
                report.duplicate_answers += bool(response.json().get("duplicate"))
                return
            problem = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                report.batch_failures.append(f"{key}: {problem} {response.text[:200]}")
                return
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            report.batch_failures.append(f"{key}: gave up after {tries} tries ({problem})")
            return
        await asyncio.sleep(min(0.05 * 2 ** tries, 1.0))


async def _get(http: httpx.AsyncClient, report: TrafficReport, path: str, sha256: str | None = None) -> bytes:
    report.gets += 1
    try:
        response = await http.get(path)
    except httpx.HTTPError as exc:
        report.get_failures.append(f"GET {path}: {type(exc).__name__}: {exc}")
        return b""
    if response.status_code != 200:
        report.get_failures.append(f"GET {path}: HTTP {response.status_code}")
        return b""
    if sha256 is not None and hashlib.sha256(response.content).hexdigest() != sha256:
        report.get_failures.append(f"GET {path}: bytes do not match their sha256")
    return response.content


async def run_traffic(base_url: str, model: str, channel: str = "stable", seconds: float = 5.0,
                      workers: int = 8, max_rounds: int = 100_000, events_per_batch: int = 20,
                      retry_s: float = 30.0, seed: int = 0) -> TrafficReport:
    """Given a base URL, run ``workers`` clients for ``seconds`` (or ``max_rounds`` rounds in all,
    whichever ends first); return what they saw. Batches still being retried at the end are
    finished (up to ``retry_s``), as a page would keep its queue."""
    report = TrafficReport()
    document_path = f"/v1/models/{model}/channels/{channel}.json"
    rounds = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)

    async def worker(index: int, http: httpx.AsyncClient) -> None:
        nonlocal rounds
        rng = random.Random(seed * 1000 + index)
        while time.monotonic() < stop and rounds < max_rounds:
            rounds += 1
            raw = await _get(http, report, document_path)
            if raw:
                document = json.loads(raw)
                files = [f for v in document["variants"] for f in v["files"]]
                file = rng.choice(files)
                await _get(http, report, file["url"], file["sha256"])
                version = document["version"]
            else:
                version = 0
            body = telemetry_batch(model, version, events_per_batch, rng)
            await _post_batch(http, report, body, events_per_batch, retry_s)

    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as http:
        await asyncio.gather(*(worker(i, http) for i in range(workers)))
    report.seconds = time.monotonic() - started
    return report
