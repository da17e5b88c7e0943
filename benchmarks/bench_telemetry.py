"""Telemetry benchmark (issue 9): durable ingest, latency under load, and /v1/stats at 5M events.

Everything on loopback, bounded in time, each party in its own process:

1. **Sustained durable ingest** on SQLite and on PostgreSQL: ``browserml serve`` in a subprocess
   (uvicorn, 1 worker, with its default telemetry validator processes: one per core), a load
   generator in another process (16 raw asyncio HTTP/1.1 keep-alive connections replaying
   pre-encoded 500-event batches, so the generator costs little CPU), counting only events
   answered 200 — i.e. committed. Beside it, the **naive baseline**: the same HTTP stack and the
   same pydantic validation, but one INSERT + COMMIT per event (a server defined in this file,
   started the same way). Ratio = ours / naive.
2. **p99 request latency at 50,000 events/s** (100 batches/s of 500, open loop: latency counted
   from each batch's scheduled send time, so a stall cannot hide queued requests).
3. **/v1/stats at 5,000,000 events over 30 days** for one model, on both databases: the events are
   bulk-loaded straight into the store (raw rows and rollups, as ingest would write them), then the
   real server is queried over HTTP; median and max of 20 queries (group_by none / engine / backend /
   device / version, each ``since=30d``).

The server's per-client rate limit is set to 0 (off) for the ingest runs: the load generator is one
client on 127.0.0.1 doing what a whole fleet of browsers would do. Each batch carries a client id
(``?client=``, one per session, as the SDK's sink sends it), and the events' model and versions
(``digits`` v3 and v4, variants float32/float16/uint8) are published in the server's registry first:
since issue 17 the server stores telemetry only about models and versions it knows, and records
which client sent each batch, so that work is measured too.

Usage: ``.venv/bin/python benchmarks/bench_telemetry.py [--seconds 10] [--events 5000000]``
(PostgreSQL from ``BROWSERML_TEST_DATABASE_URL`` or the tests' default URL; a fresh schema is made
and dropped.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DEFAULT_PG = "postgresql://browserml:browserml@127.0.0.1:5432/browserml_test"
BATCH = 500


# ------------------------------------------------------------------------------ payloads


def make_batch(seed: int, n: int = BATCH) -> bytes:
    """A realistic 500-event batch: what one browser session's sink sends — one model version,
    variant, engine, backend and device class — mostly predicts, some loads and memory checks,
    spread over the last 10 s. Different seeds are different sessions."""
    rng = random.Random(seed)
    base = {"model": "digits", "version": rng.choice([3, 4]), "variant": rng.choice(["uint8", "float16"]),
            "engine": "tfjs", "backend": rng.choice(["wasm", "webgl", "cpu"]),
            "device": rng.choice(["desktop-2c-8g-coi", "desktop-8c-8g-coi", "mobile-4c-4g"])}
    events = []
    for _ in range(n):
        age = round(rng.uniform(0, 10_000), 1)
        roll = rng.random()
        if roll < 0.9:
            ms = round(rng.lognormvariate(3, 0.5), 2)
            events.append({"type": "predict", **base, "age_ms": age, "ms": ms})
        elif roll < 0.95:
            events.append({"type": "load", **base, "age_ms": age, "ms": round(rng.uniform(500, 2000), 1),
                           "warmup_ms": round(rng.uniform(50, 800), 1)})
        else:
            events.append({"type": "memory", **base, "age_ms": age, "num_tensors": rng.randint(10, 40),
                           "num_bytes": rng.randint(1, 50) * 1_000_000})
    return json.dumps(events, separators=(",", ":")).encode()


def request_bytes(port: int, body: bytes, client: str = "") -> bytes:
    target = f"/v1/telemetry?client={client}" if client else "/v1/telemetry"
    head = (f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


# ------------------------------------------------------------------------------ load generator


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def closed_loop(ports: list[int], request: Callable[[int], bytes], connections: int,
                      seconds: float) -> dict:
    """``connections`` connections (spread over ``ports``), each sending request ``k``, ``k +
    connections``, ... back to back for ``seconds``; count 200s and the rest."""
    ok = failed = 0
    stop = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal ok, failed
        reader, writer = await asyncio.open_connection("127.0.0.1", ports[i % len(ports)])
        k = i
        while time.perf_counter() < stop:
            writer.write(request(k))
            k += connections
            if await _read_response(reader) == 200:
                ok += 1
            else:
                failed += 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    elapsed = time.perf_counter() - start
    return {"batches_ok": ok, "batches_failed": failed, "seconds": elapsed,
            "events_per_s": ok * BATCH / elapsed}


async def _open_loop(port: int, payloads: list[bytes], rate: float, seconds: float, connections: int) -> dict:
    """Send ``rate`` batches/s on a fixed schedule over a pool of connections; latency from the
    scheduled time."""
    queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    failed = 0
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2

    async def worker() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            item = await queue.get()
            if item is None:
                break
            scheduled, payload = item
            writer.write(payload)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - scheduled)
            if status != 200:
                failed += 1
        writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((scheduled, payloads[i % len(payloads)]))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    latencies.sort()

    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"requests": len(latencies), "failed": failed, "p50_ms": q(0.5), "p99_ms": q(0.99),
            "max_ms": latencies[-1] * 1000, "events_per_s": len(latencies) * BATCH / seconds}


def loadgen_main(args: argparse.Namespace) -> None:
    """Entry point of the load-generator process: prints one JSON line of results."""
    import uvloop

    payloads = [request_bytes(args.port, make_batch(seed), f"session-{seed:04d}") for seed in range(64)]
    if args.rate:
        coro = _open_loop(args.port, payloads, args.rate, args.seconds, args.connections)
    else:
        coro = closed_loop([args.port], lambda k: payloads[k % len(payloads)], args.connections,
                           args.seconds)
    print(json.dumps(uvloop.run(coro)), flush=True)


def run_loadgen(port: int, seconds: float, connections: int, rate: float = 0) -> dict:
    out = subprocess.run(
        [PYTHON, __file__, "loadgen", "--port", str(port), "--seconds", str(seconds),
         "--connections", str(connections), "--rate", str(rate)],
        capture_output=True, text=True, timeout=seconds + 120,
    )
    if out.returncode:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ naive baseline server


def naive_server_main(args: argparse.Namespace) -> None:
    """The baseline: same Starlette + uvicorn + pydantic validation, one transaction per event."""
    import sqlite3
    import threading

    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from browserml.telemetry.schema import DEFAULTS, validate_batch
    from browserml.telemetry.store import EVENT_COLUMNS

    cols = ", ".join(EVENT_COLUMNS)
    url = os.environ.get("BROWSERML_DATABASE_URL")
    if url:
        from psycopg_pool import ConnectionPool

        pool = ConnectionPool(url, min_size=4, max_size=4)
        with pool.connection() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS naive_events (id BIGSERIAL PRIMARY KEY, {_cols_sql()})")
        sql = f"INSERT INTO naive_events ({cols}) VALUES ({', '.join(['%s'] * len(EVENT_COLUMNS))})"

        def store(rows: list[tuple]) -> None:
            with pool.connection() as conn:
                conn.autocommit = True
                for row in rows:
                    conn.execute(sql, row)  # autocommit: one commit per event
    else:
        path = Path(args.data_dir) / "naive.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"CREATE TABLE IF NOT EXISTS naive_events (id INTEGER PRIMARY KEY, {_cols_sql()})")
        lock = threading.Lock()
        sql = f"INSERT INTO naive_events ({cols}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"

        def store(rows: list[tuple]) -> None:
            with lock:
                for row in rows:
                    conn.execute(sql, row)  # autocommit: one commit per event

    async def ingest(request: Request) -> JSONResponse:
        batch = validate_batch(await request.body(), 500)
        now = int(time.time() * 1000)
        rows = [(now - int(e.get("age_ms", 0)), *(e.get(c, DEFAULTS.get(c)) for c in EVENT_COLUMNS[1:]))
                for e in batch.events]
        await run_in_threadpool(store, rows)
        return JSONResponse({"accepted": len(rows), "dropped": batch.dropped})

    app = Starlette(routes=[Route("/v1/telemetry", ingest, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")


def _cols_sql() -> str:
    return ("at BIGINT, type TEXT, model TEXT, version INTEGER, variant TEXT, engine TEXT, backend TEXT, "
            "device TEXT, ms DOUBLE PRECISION, warmup_ms DOUBLE PRECISION, batch INTEGER, "
            "num_tensors BIGINT, num_bytes BIGINT, num_bytes_gpu BIGINT, phase TEXT, code TEXT, reason TEXT")


# ------------------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def publish_digits(data_dir: Path, database_url: str | None) -> None:
    """Publish ``digits`` v3 and v4 (a tiny imported TF.js model: float32, float16 and uint8
    variants), the model and versions the batches report."""
    import numpy as np

    from browserml.importer import import_model
    from browserml.registry import Registry
    from browserml.settings import Settings

    source = data_dir.parent / "tiny-tfjs"
    source.mkdir(parents=True, exist_ok=True)
    weights = np.random.default_rng(0).standard_normal(4 * 3 + 3).astype("<f4")
    (source / "w.bin").write_bytes(weights.tobytes())
    layers = [{"class_name": "Flatten", "config": {"name": "flatten", "batch_input_shape": [None, 2, 2, 1],
                                                   "dtype": "float32"}},
              {"class_name": "Dense", "config": {"name": "dense", "units": 3, "activation": "softmax",
                                                 "dtype": "float32"}}]
    (source / "model.json").write_text(json.dumps({
        "format": "layers-model", "generatedBy": "bench", "convertedBy": None,
        "modelTopology": {"class_name": "Sequential", "config": {"name": "tiny", "layers": layers}},
        "weightsManifest": [{"paths": ["w.bin"], "weights": [
            {"name": "dense/kernel", "shape": [4, 3], "dtype": "float32"},
            {"name": "dense/bias", "shape": [3], "dtype": "float32"}]}]}))
    build = data_dir.parent / "tiny-build"
    if not build.exists():
        import_model(source / "model.json", build, name="digits")
    with Registry(Settings(data_dir=data_dir, database_url=database_url)) as registry:
        have = {row.version for row in registry.db.list_versions("digits")}
        for version in sorted({3, 4} - have):
            registry.publish(build, "digits", version=version)


SERVER_PIDS: dict[int, int] = {}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants (the server and its
    validator processes), from /proc: a cost that, unlike events/s, barely moves with the load
    other processes put on the machine."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, frontier = 0.0, [pid]
    while frontier:
        current = frontier.pop()
        total += stats.get(current, (0, 0.0))[1]
        frontier += [child for child, (parent, _) in stats.items() if parent == current]
    return total


@contextmanager
def server(data_dir: Path, database_url: str | None, naive: bool = False, src: Path | None = None):
    """Run a server on a free port: ours (from ``src``, another checkout's ``src/``, when given)
    or the naive baseline; yield the port."""
    port = free_port()
    if not naive:
        publish_digits(data_dir, database_url)
    env = {**os.environ, "BROWSERML_TELEMETRY_RATE": "0", "BROWSERML_DATA_DIR": str(data_dir)}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    env.pop("BROWSERML_DATABASE_URL", None)
    if database_url:
        env["BROWSERML_DATABASE_URL"] = database_url
    if naive:
        cmd = [PYTHON, __file__, "naive-server", "--port", str(port), "--data-dir", str(data_dir)]
    else:
        cmd = [PYTHON, "-m", "browserml.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    SERVER_PIDS[port] = proc.pid
    try:
        wait_listening(port, proc)
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def pg_schema():
    import psycopg

    base = os.environ.get("BROWSERML_TEST_DATABASE_URL", DEFAULT_PG)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


# ------------------------------------------------------------------------------ stats at 5M events


def bulk_load(settings: Any, total: int, days: int = 30) -> float:
    """Write ``total`` events spread over the last ``days`` straight into the store: raw batches
    of 500 (as ingest stores them) in 50,000-event transactions, and the rollups that ingest would
    have built (the same fold, summed over the whole month, then widened to hours and days).
    Return seconds taken."""
    from browserml.telemetry.schema import encode_events
    from browserml.telemetry.stats import coarser, fold, merge_minutes
    from browserml.telemetry.store import open_store

    store = open_store(settings)
    rng = random.Random(7)
    now = int(time.time() * 1000)
    span = days * 86_400_000
    chunk = 50_000
    backends = ("wasm", "webgl", "cpu", "webgpu")
    devices = ("desktop-2c-8g-coi", "desktop-8c-8g-coi", "mobile-4c-4g", "mobile-8c-4g")
    kinds = ["predict"] * 90 + ["load"] * 3 + ["error"] * 2 + ["fallback"] + ["init"] * 2 + ["memory"] * 2
    minutes: dict = {}
    start = time.perf_counter()
    for first in range(0, total, chunk):
        n = min(chunk, total - first)
        # Each chunk fills its own slice of the month, so ids grow with time as in real ingest.
        t0 = now - span + span * first // total
        t1 = now - span + span * (first + n) // total
        times = sorted(rng.randint(t0, max(t0, t1 - 1)) for _ in range(n))
        batches: list = []
        for lo in range(0, n, BATCH):
            received = times[min(n, lo + BATCH) - 1]
            events = []
            for at in times[lo : lo + BATCH]:
                kind = rng.choice(kinds)
                e = {"type": kind, "model": "digits", "version": rng.choice((3, 4)),
                     "variant": rng.choice(("uint8", "float16", "float32")), "engine": "tfjs",
                     "backend": rng.choice(backends), "device": rng.choice(devices),
                     "age_ms": float(received - at)}
                if kind in ("predict", "load"):
                    e["ms"] = rng.lognormvariate(3, 0.6)
                if kind == "load":
                    e["warmup_ms"] = rng.uniform(50, 800)
                if kind == "memory":
                    e["num_tensors"], e["num_bytes"] = rng.randint(10, 40), rng.randint(1, 50) * 1_000_000
                events.append(e)
            merge_minutes(minutes, fold(events, received))
            batches.append((received, len(events), encode_events(events)))
        store._write(batches, [])
    rollups = coarser(minutes)
    for i in range(0, len(rollups), 20_000):
        store._write([], rollups[i : i + 20_000])
    if settings.database_url:
        # A month of real ingest would have been vacuumed and analysed by autovacuum many times;
        # a bulk load seconds before the queries would instead race autovacuum for them.
        with store.pool.connection() as conn:
            conn.autocommit = True
            conn.execute("VACUUM (ANALYZE) telemetry_rollups")
    store.close()
    return time.perf_counter() - start


def bench_stats(data_dir: Path, database_url: str | None, total: int) -> dict:
    import httpx

    from browserml.settings import Settings

    settings = Settings(data_dir=data_dir, database_url=database_url)
    load_s = bulk_load(settings, total)
    with server(data_dir, database_url) as port:
        token = (data_dir / "admin-token").read_text().strip()
        times: list[float] = []
        counts = set()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                          headers={"authorization": f"Bearer {token}"}, timeout=30) as client:
            client.get("/v1/stats", params={"model": "digits", "since": "30d"})  # connection warm-up
            for i in range(20):
                group = (None, "engine", "backend", "device", "version")[i % 5]
                params = {"model": "digits", "since": "31d", **({"group_by": group} if group else {})}
                t = time.perf_counter()
                response = client.get("/v1/stats", params=params)
                times.append((time.perf_counter() - t) * 1000)
                response.raise_for_status()
                counts.add(response.json()["total"]["count"])
    times.sort()
    return {"events": total, "bulk_load_s": round(load_s, 1), "counted": sorted(counts),
            "median_ms": round(times[len(times) // 2], 1), "max_ms": round(times[-1], 1)}


# ------------------------------------------------------------------------------ main


def bench_db(label: str, database_url: str | None, seconds: float, connections: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-telemetry-{label}-") as tmp:
        with server(Path(tmp) / "ours", database_url) as port:
            run_loadgen(port, 2, connections)  # warm-up: connections, prepared statements, caches
            ours = run_loadgen(port, seconds, connections)
            latency = run_loadgen(port, seconds, 8, rate=100)
        with server(Path(tmp) / "naive", database_url, naive=True) as port:
            naive = run_loadgen(port, min(seconds, 5), connections)
    return {"ours": ours, "naive": naive, "ratio": ours["events_per_s"] / max(naive["events_per_s"], 1),
            "latency_at_50k": latency}


def bench_before_after(label: str, database_url: str | None, seconds: float, connections: int,
                       baseline_src: Path, rounds: int) -> dict:
    """Ours and ours from ``baseline_src`` (e.g. main before a change), both running, their
    closed-loop ingest runs interleaved ``rounds`` times; medians and their ratio."""
    import statistics

    with tempfile.TemporaryDirectory(prefix=f"bench-telemetry-{label}-") as tmp, \
            server(Path(tmp) / "ours", database_url) as ours_port, \
            server(Path(tmp) / "before", database_url, src=baseline_src) as before_port:
        runs: dict[str, list[float]] = {"ours": [], "before": []}
        cpu: dict[str, list[float]] = {"ours": [], "before": []}  # server CPU ms per 1,000 events
        for port in (ours_port, before_port):
            run_loadgen(port, 2, connections)  # warm-up
        for round_ in range(rounds):
            order = (("ours", ours_port), ("before", before_port))
            for name, port in order if round_ % 2 == 0 else order[::-1]:  # ABBA: no order bias
                spent = cpu_seconds(SERVER_PIDS[port])
                result = run_loadgen(port, seconds, connections)
                spent = cpu_seconds(SERVER_PIDS[port]) - spent
                runs[name].append(result["events_per_s"])
                cpu[name].append(spent * 1e6 / max(1, result["batches_ok"] * BATCH))
    ours, before = statistics.median(runs["ours"]), statistics.median(runs["before"])
    cpu_ours, cpu_before = statistics.median(cpu["ours"]), statistics.median(cpu["before"])
    return {"ours": ours, "before": before, "ratio": ours / before, "runs": runs,
            "cpu_ms_per_1000": {"ours": cpu_ours, "before": cpu_before}, "cpu_ratio": cpu_ours / cpu_before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    lg = sub.add_parser("loadgen")
    lg.add_argument("--port", type=int, required=True)
    lg.add_argument("--seconds", type=float, default=10)
    lg.add_argument("--connections", type=int, default=4)
    lg.add_argument("--rate", type=float, default=0)
    ns = sub.add_parser("naive-server")
    ns.add_argument("--port", type=int, required=True)
    ns.add_argument("--data-dir", required=True)
    parser.add_argument("--seconds", type=float, default=10, help="Length of each ingest run.")
    parser.add_argument("--connections", type=int, default=16,
                        help="Keep-alive connections of the sustained-ingest runs (ours and naive); "
                        "a fleet is thousands of browsers, and 4 in-flight batches cap a closed loop "
                        "at 4 / request latency.")
    parser.add_argument("--events", type=int, default=5_000_000, help="Events for the stats run.")
    parser.add_argument("--only", choices=["ingest", "stats"], default=None)
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="Only compare ingest with ours run from this source tree (another "
                        "checkout's src/), interleaved --rounds times: a change's cost in one run.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds for --baseline-src.")
    args = parser.parse_args()
    if args.command == "loadgen":
        loadgen_main(args)
        return
    if args.command == "naive-server":
        naive_server_main(args)
        return

    results: dict[str, Any] = {"load_average_at_start": os.getloadavg()}
    if args.baseline_src is not None:
        with pg_schema() as pg_ingest:
            for label, url in (("sqlite", None), ("postgresql", pg_ingest)):
                r = bench_before_after(label, url, args.seconds, args.connections, args.baseline_src,
                                       args.rounds)
                results[f"{label}_before_after"] = r
                print(f"{label:10s} ingest: ours {r['ours']:,.0f} events/s, before {r['before']:,.0f} "
                      f"events/s, ours/before {r['ratio']:.3f}x; server CPU per 1,000 events: ours "
                      f"{r['cpu_ms_per_1000']['ours']:.2f} ms, "
                      f"before {r['cpu_ms_per_1000']['before']:.2f} ms, "
                      f"ours/before {r['cpu_ratio']:.3f}x (medians of {args.rounds})", flush=True)
        results["load_average_at_end"] = os.getloadavg()
        print(json.dumps(results, indent=2))
        return
    with pg_schema() as pg_ingest:
        for label, url in (("sqlite", None), ("postgresql", pg_ingest)):
            if args.only in (None, "ingest"):
                r = bench_db(label, url, args.seconds, args.connections)
                results[f"{label}_ingest"] = r
                print(f"{label:10s} ingest: ours {r['ours']['events_per_s']:,.0f} events/s, naive "
                      f"{r['naive']['events_per_s']:,.0f} events/s, ratio {r['ratio']:.1f}x; at 50k events/s "
                      f"p50 {r['latency_at_50k']['p50_ms']:.1f} ms "
                      f"p99 {r['latency_at_50k']['p99_ms']:.1f} ms "
                      f"({r['latency_at_50k']['failed']} failed)", flush=True)
    for label in ("sqlite", "postgresql"):
        if args.only in (None, "stats"):
            with tempfile.TemporaryDirectory(prefix=f"bench-stats-{label}-") as tmp, pg_schema() as pg:
                r = bench_stats(Path(tmp), pg if label == "postgresql" else None, args.events)
                results[f"{label}_stats"] = r
                print(f"{label:10s} /v1/stats over 30 days, {r['events']:,} events (bulk load "
                      f"{r['bulk_load_s']} s): median {r['median_ms']} ms, max {r['max_ms']} ms", flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
