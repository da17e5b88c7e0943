"""Telemetry ingest, stats, retention, rate limiting and crash durability (issue 9).

Real uvicorn servers on 127.0.0.1 and real databases: every test taking ``database_url`` runs on
SQLite and on PostgreSQL. The crash test runs ``browserml serve`` in a subprocess and SIGKILLs it.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from browserml.registry import Registry
from browserml.server.run import free_port
from browserml.settings import Settings
from browserml.telemetry.stats import DAY, HIST_BUCKETS, MINUTE, bucket_of, percentile
from browserml.telemetry.store import cover, open_store

PREDICT = {"type": "predict", "model": "digits", "version": 3, "variant": "uint8", "engine": "tfjs",
           "backend": "wasm", "device": "desktop-2c-8g-coi", "ms": 12.5}


def publish_digits(settings: Settings, make_build, versions=(3, 4)) -> None:
    """Publish ``digits`` at ``versions``: telemetry is accepted only about models and versions
    the registry knows (issue 17)."""
    with Registry(settings) as registry:
        for version in versions:
            registry.publish(make_build(seed=version), "digits", version=version)


@pytest.fixture
def telemetry_settings(registry_settings: Settings, make_build) -> Settings:
    """``registry_settings`` with digits v3 and v4 published (the events' model)."""
    publish_digits(registry_settings, make_build)
    return registry_settings


def token_of(settings: Settings) -> dict[str, str]:
    return {"authorization": f"Bearer {(Path(settings.data_dir) / 'admin-token').read_text().strip()}"}


def post(url: str, body: bytes | str | list, content_type: str = "text/plain", **kw) -> httpx.Response:
    content = json.dumps(body) if isinstance(body, list) else body
    return httpx.post(f"{url}/v1/telemetry", content=content, headers={"content-type": content_type}, **kw)


def session_events(backend: str, n_predict: int, ms: float) -> list[dict]:
    """What one browser session reports: init, load (with warm-up), predicts, a memory check."""
    base = {k: PREDICT[k] for k in ("model", "version", "variant", "engine", "device")} | {"backend": backend}
    return [
        {"type": "init", **base},
        {"type": "load", **base, "ms": 900.0, "warmup_ms": 120.0},
        *[{"type": "predict", **base, "ms": ms, "age_ms": 5} for _ in range(n_predict)],
        {"type": "memory", **base, "num_tensors": 12, "num_bytes": 4_000_000},
    ]


@pytest.mark.parametrize("validators", [0, 1], ids=["in-process", "validator-process"])
def test_ingest_then_stats_grouped_and_over_time(telemetry_settings, live_server, validators):
    telemetry_settings = telemetry_settings.model_copy(update={"telemetry_validators": validators})
    server = live_server(telemetry_settings)
    wasm = session_events("wasm", 40, 10.0)
    webgl = [
        *session_events("webgl", 10, 300.0),
        {"type": "fallback", "model": "digits", "backend": "webgl", "reason": "context lost"},
        {"type": "error", "model": "digits", "backend": "webgl", "phase": "predict", "reason": "x" * 2000},
    ]
    for batch in (wasm, webgl):
        response = post(server.url, batch)
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": len(batch), "dropped": 0, "errors": []}

    auth = token_of(telemetry_settings)
    body = httpx.get(f"{server.url}/v1/stats", params={"model": "digits", "since": "1h",
                                                       "group_by": "backend"}, headers=auth).json()
    total = body["total"]
    assert total["count"] == len(wasm) + len(webgl)
    assert total["predictions"] == 50
    assert total["events"] == {"init": 2, "load": 2, "predict": 50, "error": 1, "fallback": 1, "memory": 2}
    assert total["error_rate"] == pytest.approx(1 / 51, abs=1e-6)
    assert total["fallback_rate"] == pytest.approx(0.5)
    assert total["init_ms"] == {"mean": 900.0, "max": 900.0}
    assert total["warmup_ms"]["mean"] == 120.0
    assert total["memory"]["bytes_max"] == 4_000_000 and total["memory"]["tensors_max"] == 12
    assert total["savings"]["estimated"] == pytest.approx(50 / 1000 * telemetry_settings.server_cost_per_1000)
    groups = {g["key"]: g for g in body["groups"]}
    assert set(groups) == {"wasm", "webgl"}
    # Latencies are read from log buckets: within a bucket width (19 %) of the truth.
    assert groups["wasm"]["latency_ms"]["p50"] == pytest.approx(10.0, rel=0.19)
    assert groups["webgl"]["latency_ms"]["p99"] == pytest.approx(300.0, rel=0.19)
    assert groups["wasm"]["error_rate"] == 0.0

    series = httpx.get(f"{server.url}/v1/stats/series", params={"model": "digits", "since": "1h"},
                       headers=auth).json()
    assert series["step_ms"] == MINUTE
    assert sum(p["predictions"] for p in series["points"]) == 50
    models = httpx.get(f"{server.url}/v1/stats/models", headers=auth).json()
    assert models["models"] == ["digits"]

    store = server_store(server)
    assert store.count_events() == total["count"]
    assert store.count_events("reason = ?", ("x" * 500,)) == 1  # long error text is cut, not refused


def server_store(server):
    return server.server.config.app.state.telemetry.store


def test_raw_events_read_back_as_sent(telemetry_settings, live_server):
    """Raw events are stored one row per batch; the telemetry_events view gives them back as
    typed rows, dated by the server's clock minus each event's age."""
    server = live_server(telemetry_settings)
    before = int(time.time() * 1000)
    sent = [PREDICT | {"age_ms": 60_000.0}, {"type": "memory", "model": "digits", "num_bytes": 7}]
    assert post(server.url, sent).status_code == 200
    after = int(time.time() * 1000)
    store = server_store(server)
    with store._read() as conn:
        rows = conn.execute(store._sql(
            "SELECT position, at, type, version, backend, ms, batch, num_bytes, reason "
            "FROM telemetry_events ORDER BY position"), ()).fetchall()
    (p0, at0, *first), (p1, at1, *second) = rows
    assert (p0, p1) == (0, 1)
    assert before - 60_000 <= at0 <= after - 60_000 and before <= at1 <= after
    assert first == ["predict", 3, "wasm", 12.5, 1, None, ""]
    assert second == ["memory", 0, "", None, 1, 7, ""]  # absent fields read as the schema defaults


def test_a_dead_validator_process_costs_no_batch(telemetry_settings, live_server):
    settings = telemetry_settings.model_copy(update={"telemetry_validators": 1})
    server = live_server(settings)
    assert post(server.url, [PREDICT]).status_code == 200
    service = server.server.config.app.state.telemetry
    workers = list(service.validators._processes.values())
    assert len(workers) == 1
    os.kill(workers[0].pid, signal.SIGKILL)
    workers[0].join(10)
    for _ in range(3):  # the batch that finds the pool broken, and the ones after on a new pool
        response = post(server.url, [PREDICT, PREDICT])
        assert response.status_code == 200, response.text
    assert server_store(server).count_events() == 7
    assert service.metrics.validator_restarts._value.get() == 1


def test_bad_input_is_refused_with_the_reason(telemetry_settings, live_server):
    server = live_server(telemetry_settings)
    url = server.url
    store = server_store(server)

    cases = [
        (b"[{\"type\": ", 400, "malformed JSON"),
        (b"\xff\xfe", 400, "malformed JSON"),
        (json.dumps({"type": "predict"}), 400, "JSON array"),
        (json.dumps("hello"), 400, "JSON array"),
        (json.dumps([PREDICT] * 501), 413, "500 event limit"),
        (json.dumps([{**PREDICT, "reason": "y" * 2000}] * 500), 413, "byte limit"),
    ]
    for body, status, reason in cases:
        response = post(url, body)
        assert response.status_code == status, (body[:40], response.text)
        assert reason in response.json()["error"]

    # Bad events are dropped one by one; the good ones in the same batch are stored.
    mixed = [
        PREDICT,
        {**PREDICT, "ms": "12"},                 # wrong type (strings are not numbers)
        {**PREDICT, "version": True},            # a bool is not an int
        {**PREDICT, "user_agent": "Mozilla"},    # unknown field
        {**PREDICT, "ms": -1},                   # out of range
        {**PREDICT, "backend": "a b <script>"},  # not a label
        {**PREDICT, "model": "Digits!"},         # bad model name
        {"model": "digits"},                     # no type
        [1, 2],                                  # not an object
    ]
    response = post(url, mixed, "application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1 and body["dropped"] == 8
    reasons = {e["index"]: e["error"] for e in body["errors"]}
    assert "ms" in reasons[1] and "user_agent" in reasons[3] and "Extra inputs" in reasons[3]
    assert "type" in reasons[7]

    # A batch with only bad events stores nothing and says why.
    response = post(url, [{**PREDICT, "ms": "slow"}])
    assert response.status_code == 400
    assert response.json()["dropped"] == 1 and "ms" in response.json()["errors"][0]["error"]

    # Oversized without Content-Length (chunked) is cut off at the limit too.
    def chunks():
        yield b"["
        for _ in range(20):
            yield b" " * 100_000
        yield b"]"

    response = httpx.post(f"{url}/v1/telemetry", content=chunks(), headers={"content-type": "text/plain"})
    assert response.status_code == 413
    response = post(url, "[]", "multipart/form-data")
    assert response.status_code == 415 and "text/plain" in response.json()["error"]
    assert post(url, "[]").json() == {"accepted": 0, "dropped": 0, "errors": []}

    assert store.count_events() == 1


def test_stats_metrics_need_the_token_unless_public(telemetry_settings, live_server):
    server = live_server(telemetry_settings)
    for path in ("/v1/stats?model=digits", "/v1/stats/series?model=digits", "/v1/stats/models", "/metrics"):
        response = httpx.get(server.url + path)
        assert response.status_code == 401 and response.json() == {"error": "unauthorized"}
    auth = token_of(telemetry_settings)
    for params, reason in (({}, "model is required"), ({"model": "digits", "group_by": "os"}, "group_by"),
                           ({"model": "digits", "since": "yesterday"}, "duration"),
                           ({"model": "digits", "since": "1h", "until": "2h"}, "before")):
        response = httpx.get(f"{server.url}/v1/stats", params=params, headers=auth)
        assert response.status_code == 400 and reason in response.json()["error"]
    post(server.url, [PREDICT])
    metrics = httpx.get(f"{server.url}/metrics", headers=auth).text
    assert "browserml_telemetry_events_accepted_total 1.0" in metrics
    assert 'browserml_http_requests_total{method="POST",status="2xx",surface="telemetry"} 1.0' in metrics

    public = telemetry_settings.model_copy(update={"dashboard_public": True, "metrics_public": True})
    server2 = live_server(public)
    assert httpx.get(f"{server2.url}/v1/stats", params={"model": "digits"}).status_code == 200
    assert httpx.get(f"{server2.url}/metrics").status_code == 200


def test_a_flood_gets_429_and_the_server_stays_up(telemetry_settings, live_server):
    settings = telemetry_settings.model_copy(update={"telemetry_rate": 100.0, "telemetry_burst": 500})
    server = live_server(settings)
    statuses: list[int] = []
    retry_after: set[str] = set()

    def flood() -> None:
        with httpx.Client() as client:
            for _ in range(25):
                r = client.post(f"{server.url}/v1/telemetry", content=json.dumps([PREDICT] * 50),
                                headers={"content-type": "text/plain"})
                statuses.append(r.status_code)
                if r.status_code == 429:
                    retry_after.add(r.headers["retry-after"])

    threads = [threading.Thread(target=flood) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses) == {200, 429}
    assert statuses.count(429) > statuses.count(200)
    assert all(int(v) >= 1 for v in retry_after)
    stored = server_store(server).count_events()
    assert stored == 50 * statuses.count(200)
    # Still serving: stats, metrics, and telemetry again once the bucket refills.
    auth = token_of(settings)
    assert httpx.get(f"{server.url}/v1/stats", params={"model": "digits"}, headers=auth).status_code == 200
    assert 'outcome="rate_limited"' in httpx.get(f"{server.url}/metrics", headers=auth).text
    time.sleep(1.1)
    assert post(server.url, [PREDICT]).status_code == 200


def test_sigkill_mid_load_keeps_every_acknowledged_event(tmp_path, database_url, make_build):
    """Every event answered 2xx before the server is SIGKILLed is in the database afterwards."""
    data_dir = tmp_path / "data"
    publish_digits(Settings(data_dir=data_dir, database_url=database_url), make_build)
    port = free_port()
    env = {**os.environ, "BROWSERML_TELEMETRY_RATE": "0"}
    env.pop("BROWSERML_DATABASE_URL", None)
    if database_url:
        env["BROWSERML_DATABASE_URL"] = database_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "browserml.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

        acked: list[str] = []
        stop = threading.Event()

        def load(worker: int) -> None:
            with httpx.Client(timeout=10) as client:
                n = 0
                while not stop.is_set():
                    tag = f"kill-{worker}-{n}"
                    n += 1
                    batch = [{**PREDICT, "device": tag, "ms": float(i)} for i in range(100)]
                    try:
                        r = client.post(f"{url}/v1/telemetry", content=json.dumps(batch),
                                        headers={"content-type": "text/plain"})
                    except httpx.TransportError:
                        return
                    if r.status_code == 200:
                        acked.append(tag)

        threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        while len(acked) < 40:
            assert all(t.is_alive() for t in threads)
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # mid-load: requests are in flight
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    settings = Settings(data_dir=data_dir, database_url=database_url)
    store = open_store(settings)
    try:
        with store._read() as conn:
            rows = conn.execute(
                store._sql("SELECT device, COUNT(*) FROM telemetry_events GROUP BY device"), ()
            ).fetchall()
        counts = dict(rows)
        missing = [tag for tag in acked if counts.get(tag) != 100]
        assert not missing, f"{len(missing)} acknowledged batches lost or partial: {missing[:5]}"
        assert all(n == 100 for n in counts.values()), "a batch is all or nothing"
        # Rollups commit with their events: they agree with the raw rows exactly.
        now = int(time.time() * 1000)
        _, total = store.summary("digits", now - DAY, now + MINUTE, None)
        assert total[0] == sum(counts.values())
    finally:
        store.close()


def test_retention_deletes_old_events_in_chunks_and_keeps_rollups(tmp_path, database_url):
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    store = open_store(settings)
    try:
        now = int(time.time() * 1000)
        old, recent = now - 40 * DAY, now - 1000
        for _ in range(6):
            store.ingest([PREDICT] * 20, old)
        store.ingest([PREDICT] * 30, recent)
        assert store.count_events() == 150
        deleted = []
        while n := store.purge_chunk(now, raw_days=30, rollup_days=35, chunk=2):
            deleted.append(n)
        assert len(deleted) >= 3, "deleted in several short transactions"
        assert store.count_events() == 30
        assert store.count_events("at < ?", (now - 30 * DAY,)) == 0
        # Hour and day rollups outlive the raw events; old minute rows are gone.
        _, total = store.summary("digits", old - DAY, now + MINUTE, None)
        assert total[0] == 150
        assert store.series("digits", old - DAY, old + DAY, MINUTE, None) == []
        assert len(store.series("digits", now - 3600_000, now + MINUTE, MINUTE, None)) == 1
    finally:
        store.close()


def test_percentiles_from_log_buckets_are_close():
    import random

    rng = random.Random(3)
    values = sorted(rng.lognormvariate(3, 0.8) for _ in range(20_000))
    counts = [0] * HIST_BUCKETS
    for v in values:
        counts[bucket_of(v)] += 1
    for q in (0.5, 0.95, 0.99):
        exact = values[int(q * len(values))]
        assert percentile(counts, q) == pytest.approx(exact, rel=0.05)
    assert percentile([0] * HIST_BUCKETS, 0.5) is None


def test_cover_tiles_any_window_exactly():
    import random

    rng = random.Random(5)
    for _ in range(500):
        since = rng.randint(0, 90 * DAY)
        until = since + rng.randint(1, 40 * DAY)
        ranges = cover(since, until)
        flat = sorted((lo, hi) for _, lo, hi in ranges)
        assert flat[0][0] == since - since % MINUTE
        assert flat[-1][1] >= until
        assert all(a[1] == b[0] for a, b in itertools.pairwise(flat))
        assert all((hi - lo) % span == 0 and lo % span == 0 for span, lo, hi in ranges)
        assert len(ranges) <= 5


def test_demo_publishes_digits_once_and_gives_the_urls(registry_settings, make_build):
    from browserml.demo import demo_urls, publish_digits

    build = make_build(seed=1)
    first = publish_digits(registry_settings, build)
    again = publish_digits(registry_settings, make_build(seed=2))
    assert first.fresh and not again.fresh and again.version == first.version
    urls = demo_urls(registry_settings, "127.0.0.1", 8123)
    token = (Path(registry_settings.data_dir) / "admin-token").read_text().strip()
    assert urls["demo"] == "http://127.0.0.1:8123/demo/"
    assert urls["dashboard"] == f"http://127.0.0.1:8123/dashboard/#token={token}"
    public = registry_settings.model_copy(update={"dashboard_public": True})
    assert demo_urls(public, "127.0.0.1", 8123)["dashboard"].endswith("/dashboard/")
