"""Scale-out benchmark (issue 20): telemetry ingest with 1 and 2 ``browserml serve`` instances on
one PostgreSQL behind Debian's nginx, and a SIGKILL of one instance under client load.

1. **Ingest, 1 vs 2 instances.** Each configuration is nginx (2 workers, ``least_conn``) in front
   of N instances (separate processes and ports, ``BROWSERML_TELEMETRY_VALIDATORS=0`` so one
   instance is one process, each pinned with ``taskset`` to its own core: instance i on core
   i mod cores), one PostgreSQL schema, and a load generator process replaying 500-event batches
   over keep-alive connections, each request with its own idempotency key (the SDK always sends
   one). Runs go in the order 1, 2, 2, 1 so drift from other work on the machine hits both sides;
   events/s counts only 200 answers (committed). Beside each run, the CPU seconds each party used
   (from /proc: instances, nginx, postgres, load generator), which names the bottleneck.
2. **Failover.** Clients (``browserml.bench.traffic``: channel document, blob, telemetry batch
   with SDK-style retries under one key) run through nginx in front of 2 instances; one is
   SIGKILLed a third of the way in and restarted 1 s later. Reported: failed GETs, failed batches,
   acknowledged events vs events in the database (lost / duplicated), rollups vs raw.

Usage: ``.venv/bin/python benchmarks/bench_scale.py [--seconds 8] [--connections 16]``
(PostgreSQL from ``BROWSERML_TEST_DATABASE_URL`` or the tests' default; a fresh schema per run.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_telemetry import BATCH, closed_loop, make_batch, pg_schema  # noqa: E402

from browserml import nginx  # noqa: E402
from browserml.server.instances import instance_env, start_instances  # noqa: E402
from browserml.server.run import free_port  # noqa: E402
from browserml.settings import Settings  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ load generator (own process)


async def _closed_loop(ports: list[int], bodies: list[bytes], connections: int, seconds: float) -> dict:
    """bench_telemetry's closed loop, each batch under its own idempotency key (as the SDK sends)."""
    prefix = uuid.uuid4().hex[:12]

    def request(k: int) -> bytes:
        body = bodies[k % len(bodies)]
        head = (f"POST /v1/telemetry?batch={prefix}-{k} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        return head + body

    return await closed_loop(ports, request, connections, seconds)


def loadgen_main(args: argparse.Namespace) -> None:
    import uvloop

    bodies = [make_batch(seed) for seed in range(64)]
    ports = [int(p) for p in args.ports.split(",")]
    print(json.dumps(uvloop.run(_closed_loop(ports, bodies, args.connections, args.seconds))), flush=True)


# ------------------------------------------------------------------ CPU accounting


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """utime + stime of one process, in seconds (0 when it is gone); with ``reaped``, plus the
    CPU of its children that have exited (PostgreSQL's short-lived backends, via the postmaster)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    own = int(fields[11]) + int(fields[12])
    return (own + (int(fields[13]) + int(fields[14]) if reaped else 0)) / CLK_TCK


def pids_named(name: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry.name))
    return out


def snapshot(groups: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    """CPU seconds per process of each group; PostgreSQL's processes are listed afresh (backends
    come and go) and its postmaster (the lowest pid) carries its exited backends' CPU."""
    out = {}
    for name, pids in groups.items():
        if name == "postgres":
            pids = sorted(pids_named("postgres"))
            out[name] = {p: cpu_seconds(p, reaped=(i == 0)) for i, p in enumerate(pids)}
        else:
            out[name] = {p: cpu_seconds(p) for p in pids}
    return out


def used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds each group used between two snapshots (a process born in between: all of it)."""
    return {name: round(sum(cpu - before[name].get(pid, 0.0) for pid, cpu in procs.items()), 2)
            for name, procs in after.items()}


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / CLK_TCK, sum(fields) / CLK_TCK


# ------------------------------------------------------------------ one configuration


OPTIONS: dict[str, Any] = {"balancer": "nginx", "instance_cpus": None}


@contextmanager
def deployment(count: int, database_url: str, workdir: Path, publish: Any = None, **settings: object):
    """``count`` instances (pinned one core each) behind nginx, or addressed directly by the load
    generator (``--balancer direct``); yield (ports to send to, instances, CPU groups)."""
    cores = os.cpu_count() or 1
    env = instance_env(database_url, secrets.token_urlsafe(32), telemetry_validators=0, telemetry_rate=0,
                       **settings)
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if publish is not None:
        publish(data_dir, database_url)
    cpus = OPTIONS["instance_cpus"] or [str(i % cores) for i in range(count)]
    instances = start_instances(count, data_dir, env, [free_port() for _ in range(count)], cpus=cpus[:count])
    groups = {"instances": [i.process.pid for i in instances], "postgres": pids_named("postgres")}
    try:
        if OPTIONS["balancer"] == "direct":
            yield [i.port for i in instances], instances, groups
            return
        port = free_port()
        fragment = nginx.balancer_server_block([i.address for i in instances], f"127.0.0.1:{port}")
        with nginx.start_nginx(workdir / "nginx", fragment, port, workers=2) as proxy:
            groups["nginx"] = [proxy.process.pid, *children(proxy.process.pid)]
            yield [port], instances, groups
    finally:
        for instance in instances:
            instance.stop()


def publish_digits(data_dir: Path, database_url: str, versions: tuple[int, ...] = (3, 4)) -> None:
    """Publish the model and versions the load generator's batches name (telemetry for models the
    registry does not have is answered ``unknown`` and stored nowhere)."""
    from browserml.registry import Registry
    from conftest import write_synthetic_build

    with Registry(Settings(data_dir=data_dir, database_url=database_url)) as registry:
        for version in versions:
            registry.publish(write_synthetic_build(data_dir.parent / f"build-{version}", seed=version),
                             "digits", version=version, channel="stable")


def stored_events(database_url: str) -> int:
    """Events in the database (a check that the run stored what it was answered for)."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        return int(conn.execute("SELECT COALESCE(SUM(n), 0) FROM telemetry_batches").fetchone()[0])


def ingest_run(count: int, seconds: float, connections: int) -> dict[str, Any]:
    with (tempfile.TemporaryDirectory(prefix=f"bench-scale-{count}-") as tmp, pg_schema() as url,
          deployment(count, url, Path(tmp), publish=publish_digits) as (ports, _, groups)):
            procs = OPTIONS["loadgen_procs"]
            prefix = ["taskset", "-c", OPTIONS["loadgen_cpus"]] if OPTIONS["loadgen_cpus"] else []

            def generator(length: float) -> list[str]:
                return [*prefix, sys.executable, __file__, "loadgen", "--ports", ",".join(map(str, ports)),
                        "--seconds", str(length), "--connections", str(max(1, connections // procs))]

            subprocess.run(generator(2), capture_output=True, check=True, timeout=120)  # warm-up
            before, started, machine_before = snapshot(groups), time.monotonic(), machine_cpu()
            running = [subprocess.Popen(generator(seconds), stdout=subprocess.PIPE, text=True)
                       for _ in range(procs)]
            watched = {proc.pid: 0.0 for proc in running}

            def watch() -> None:  # the generators' CPU, read until they exit
                while any(proc.poll() is None for proc in running):
                    for proc in running:
                        if proc.poll() is None:
                            watched[proc.pid] = cpu_seconds(proc.pid)
                    time.sleep(0.2)

            watcher = threading.Thread(target=watch)
            watcher.start()
            outs = [proc.communicate(timeout=seconds + 120)[0] for proc in running]
            watcher.join()
            elapsed = time.monotonic() - started
            after, machine_after = snapshot(groups), machine_cpu()
            stored = stored_events(url)
    parts = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    result = {"batches_ok": sum(p["batches_ok"] for p in parts),
              "batches_failed": sum(p["batches_failed"] for p in parts),
              "events_per_s": sum(p["events_per_s"] for p in parts)}
    result["events_stored"] = stored
    cpu = used(before, after)
    cpu["load generator"] = round(sum(watched.values()), 2)
    result["cpu_seconds"] = cpu
    result["cpu_share_of_machine"] = round(sum(cpu.values()) / (elapsed * (os.cpu_count() or 1)), 2)
    events = result["batches_ok"] * BATCH
    # CPU per event, which contention does not change: the same for 1 and 2 instances means no
    # cross-instance overhead, so throughput follows the cores the instances get.
    result["events_per_instance_cpu_s"] = round(events / max(cpu["instances"], 1e-9))
    result["events_per_postgres_cpu_s"] = round(events / max(cpu["postgres"], 1e-9))
    busy = machine_after[0] - machine_before[0]
    result["machine_busy"] = round(busy / (machine_after[1] - machine_before[1]), 2)
    result["others_cpu_seconds"] = round(busy - sum(cpu.values()), 2)
    return result


# ------------------------------------------------------------------ failover


def failover_run(seconds: float) -> dict[str, Any]:
    from browserml.bench.traffic import run_traffic
    from browserml.registry import Registry
    from browserml.telemetry.store import open_store
    from conftest import write_synthetic_build

    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp, pg_schema() as url:
        settings = Settings(data_dir=Path(tmp) / "data", database_url=url)
        with Registry(settings) as registry:
            registry.publish(write_synthetic_build(Path(tmp) / "build", seed=1), "digits", channel="stable")
        with deployment(2, url, Path(tmp)) as (ports, instances, _):
            port = ports[0]
            result: dict[str, Any] = {}
            thread = threading.Thread(target=lambda: result.update(report=asyncio.run(run_traffic(
                f"http://127.0.0.1:{port}", "digits", seconds=seconds, workers=8, events_per_batch=20))))
            thread.start()
            time.sleep(seconds / 3)
            instances[1].kill()
            killed_at = time.monotonic()
            time.sleep(1)
            instances[1].start()
            restarted_after = time.monotonic() - killed_at
            thread.join()
        store = open_store(settings)
        try:
            raw = store.count_events()
            with store._read() as conn:
                rollups = dict(conn.execute("SELECT span, SUM(n_events) FROM telemetry_rollups GROUP BY span")
                               .fetchall())
        finally:
            store.close()
    report = result["report"]
    acknowledged = report.events_acknowledged
    return {**report.summary(), "restarted_after_s": round(restarted_after, 2), "events_stored": raw,
            "events_lost": max(0, acknowledged - raw), "events_duplicated": max(0, raw - acknowledged),
            "rollups_match_raw": all(int(v) == raw for v in rollups.values()) and len(rollups) == 3}


def private_postgres(folder: str, cpus: str | None) -> str:
    """Start PostgreSQL from the ``pgserver`` wheel in ``folder`` (for a benchmark host that has
    none), pin its processes to ``cpus``; return its URL."""
    import pgserver

    server = pgserver.get_server(folder, cleanup_mode=None)
    if cpus:
        wanted = {int(c) for part in cpus.split(",") for c in
                  (range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1))}
        for pid in pids_named("postgres"):
            os.sched_setaffinity(pid, wanted)
    return server.get_uri()


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    lg = sub.add_parser("loadgen")
    lg.add_argument("--ports", required=True)
    lg.add_argument("--seconds", type=float, default=8)
    lg.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8, help="Length of each ingest run.")
    parser.add_argument("--connections", type=int, default=16, help="Load generator connections.")
    parser.add_argument("--failover-seconds", type=float, default=9, help="Length of the failover run.")
    parser.add_argument("--only", choices=["ingest", "failover"], default=None)
    parser.add_argument("--rounds", type=int, default=1, help="Repeats of the 1, 2, 2, 1 ingest order.")
    parser.add_argument("--balancer", choices=["nginx", "direct"], default="nginx",
                        help="Send through nginx, or spread the generator's connections over the "
                        "instances directly (a host without nginx).")
    parser.add_argument("--instance-cpus", default=None,
                        help="taskset CPU list per instance, ';'-separated (default: instance i on core i).")
    parser.add_argument("--loadgen-cpus", default=None, help="taskset CPU list for the load generators.")
    parser.add_argument("--loadgen-procs", type=int, default=1, help="Load generator processes.")
    parser.add_argument("--pgserver", default=None,
                        help="Start a private PostgreSQL with the pgserver package in this folder "
                        "(a host without one); --pg-cpus pins it.")
    parser.add_argument("--pg-cpus", default=None, help="CPUs for that PostgreSQL's processes.")
    args = parser.parse_args()
    if args.command == "loadgen":
        loadgen_main(args)
        return
    OPTIONS.update(balancer=args.balancer, loadgen_cpus=args.loadgen_cpus, loadgen_procs=args.loadgen_procs,
                   instance_cpus=args.instance_cpus.split(";") if args.instance_cpus else None)
    if args.pgserver:
        os.environ["BROWSERML_TEST_DATABASE_URL"] = private_postgres(args.pgserver, args.pg_cpus)
    if args.balancer == "nginx":
        nginx.nginx_binary()
    results: dict[str, Any] = {"cores": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    if args.only in (None, "ingest"):
        runs: dict[int, list[dict]] = {1: [], 2: []}
        for count in (1, 2, 2, 1) * args.rounds:
            r = ingest_run(count, args.seconds, args.connections)
            runs[count].append(r)
            print(f"{count} instance(s): {r['events_per_s']:,.0f} events/s ({r['batches_failed']} failed, "
                  f"{r['events_stored']:,} events stored incl. warm-up); "
                  f"CPU s {r['cpu_seconds']} = {r['cpu_share_of_machine']:.0%} of the machine; machine "
                  f"{r['machine_busy']:.0%} busy, {r['others_cpu_seconds']} CPU s by other processes",
                  flush=True)
        for count in (1, 2):
            per_cpu = statistics.median(r["events_per_instance_cpu_s"] for r in runs[count])
            per_pg = statistics.median(r["events_per_postgres_cpu_s"] for r in runs[count])
            print(f"{count} instance(s): median {per_cpu:,.0f} events per instance CPU-second, "
                  f"{per_pg:,.0f} per PostgreSQL CPU-second", flush=True)
        one = statistics.median(r["events_per_s"] for r in runs[1])
        two = statistics.median(r["events_per_s"] for r in runs[2])
        results["ingest"] = {"one": runs[1], "two": runs[2], "ratio": two / one}
        print(f"ingest: 1 instance {one:,.0f} events/s, 2 instances {two:,.0f} events/s: {two / one:.2f}x",
              flush=True)
    if args.only in (None, "failover"):
        r = failover_run(args.failover_seconds)
        results["failover"] = r
        print(f"failover: {r['gets']} GETs ({r['get_failures']} failed), {r['batches']} batches "
              f"({r['batch_failures']} failed, {r['retried_batches']} retried, {r['duplicate_answers']} "
              f"answered duplicate), {r['events_acknowledged']} events acknowledged, {r['events_stored']} "
              f"stored: {r['events_lost']} lost, {r['events_duplicated']} duplicated; rollups match raw: "
              f"{r['rollups_match_raw']}", flush=True)
    results["load_average_at_end"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
