"""Several ``browserml serve`` processes over one PostgreSQL behind Debian's real nginx (issue 20):
what one instance changes, every instance answers; a telemetry batch lands once whichever
instance and attempt carried it; killing an instance under load costs clients nothing.
Loopback only, every run bounded in time and count.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from browserml import nginx
from browserml.bench.traffic import run_traffic, telemetry_batch
from browserml.registry import Registry
from browserml.server.instances import Instance, instance_env, start_instances
from browserml.server.run import free_port
from browserml.settings import Settings
from browserml.telemetry.stats import DAY, HOUR, MINUTE
from browserml.telemetry.store import open_store
from conftest import fresh_schema, write_synthetic_build


@dataclass
class Cluster:
    """Two instances (``a``, ``b``) sharing PostgreSQL, blobs and token, and nginx in front."""

    settings: Settings
    token: str
    instances: list[Instance]
    balancer: str
    balancer_log: Path

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for this module's cluster (tests count deltas, not totals)."""
    with fresh_schema() as url:
        yield url


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, schema_url: str) -> Iterator[Cluster]:
    """Started once for the module: starting two servers costs ~5 s on this machine."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    postgres_schema_url = schema_url
    data_dir = tmp_path / "shared"
    settings = Settings(data_dir=data_dir, database_url=postgres_schema_url)
    with Registry(settings) as registry:
        registry.publish(write_synthetic_build(tmp_path / "b1", seed=1), "digits", channel="stable")
        registry.publish(write_synthetic_build(tmp_path / "b2", seed=2), "digits")
    token = secrets.token_urlsafe(32)
    env = instance_env(postgres_schema_url, token, telemetry_validators=0, telemetry_rate=0)
    instances = start_instances(2, data_dir, env, [free_port(), free_port()])
    port = free_port()
    fragment = nginx.balancer_server_block([i.address for i in instances], f"127.0.0.1:{port}")
    try:
        with nginx.start_nginx(tmp_path / "balancer", fragment, port):
            yield Cluster(settings, token, instances, f"http://127.0.0.1:{port}",
                          tmp_path / "balancer" / "error.log")
    finally:
        for instance in instances:
            instance.stop()


HTTP = httpx.Client(timeout=10)  # one client: httpx.get() builds a TLS context per call


def version_at(url: str, client: str | None = None) -> tuple[int, int]:
    """The version a server answers in the channel document and in the per-client manifest."""
    params = {"client": client} if client else {}
    document = HTTP.get(f"{url}/v1/models/digits/channels/stable.json").json()
    manifest = HTTP.get(f"{url}/v1/models/digits/manifest", params=params).json()
    return document["version"], manifest["version"]


def test_a_promote_on_one_instance_is_what_every_instance_answers(cluster):
    a, b = cluster.instances
    assert version_at(a.url) == version_at(b.url) == version_at(cluster.balancer) == (1, 1)
    assert HTTP.post(f"{a.url}/v1/models/digits/channels/stable", json={"version": 2},
                      headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    promoted = HTTP.post(f"{a.url}/v1/models/digits/channels/stable", json={"version": 2},
                          headers=cluster.admin)
    assert promoted.status_code == 200, promoted.text
    # No in-process cache stands between the database and the answer: b knows at once.
    assert version_at(b.url) == (2, 2)
    assert version_at(cluster.balancer) == (2, 2)
    rolled = HTTP.post(f"{b.url}/v1/models/digits/channels/stable/rollback", headers=cluster.admin)
    assert rolled.status_code == 200, rolled.text
    assert version_at(a.url) == (1, 1)

    # A canary: every instance puts each client in the same group, and so does the document.
    assert HTTP.post(f"{b.url}/v1/models/digits/channels/stable", json={"version": 2, "percent": 40},
                      headers=cluster.admin).status_code == 200
    clients = [f"user-{i}" for i in range(40)]
    on_a = [version_at(a.url, c)[1] for c in clients]
    on_b = [version_at(b.url, c)[1] for c in clients]
    assert on_a == on_b and 0 < on_a.count(2) < len(clients)
    document = HTTP.get(f"{a.url}/v1/models/digits/channels/stable.json").json()
    assert document["rollout"]["percent"] == 40 and document["rollout"]["manifest"]["version"] == 2


def stored_counts(settings: Settings) -> tuple[int, dict[int, int]]:
    """Raw events stored, and the events the minute, hour and day rollups count."""
    store = open_store(settings)
    try:
        raw = store.count_events()
        with store._read() as conn:
            rows = conn.execute("SELECT span, SUM(n_events) FROM telemetry_rollups GROUP BY span").fetchall()
    finally:
        store.close()
    return raw, {int(span): int(total) for span, total in rows}


def test_a_batch_sent_twice_to_two_instances_is_stored_once(cluster):
    a, b = cluster.instances
    raw_before, rollups_before = stored_counts(cluster.settings)
    body = telemetry_batch("digits", 1, 25, random.Random(3))
    key = str(uuid.uuid4())
    first = HTTP.post(f"{a.url}/v1/telemetry?batch={key}", content=body)
    again = HTTP.post(f"{b.url}/v1/telemetry?batch={key}", content=body)
    assert first.status_code == again.status_code == 200
    assert first.json()["accepted"] == again.json()["accepted"] == 25
    assert "duplicate" not in first.json() and again.json()["duplicate"] is True

    race = str(uuid.uuid4())

    async def together() -> list[httpx.Response]:  # the same retry racing on both instances
        async with httpx.AsyncClient() as http:
            return await asyncio.gather(*(http.post(f"{u}/v1/telemetry?batch={race}", content=body)
                                          for u in (a.url, b.url, a.url, b.url)))

    raced = asyncio.run(together())
    assert [r.status_code for r in raced] == [200] * 4
    assert sum(not r.json().get("duplicate") for r in raced) == 1
    other = HTTP.post(f"{b.url}/v1/telemetry?batch={uuid.uuid4()}", content=body)
    assert "duplicate" not in other.json()
    assert HTTP.post(f"{a.url}/v1/telemetry?batch=no spaces", content=body).status_code == 400
    raw, rollups = stored_counts(cluster.settings)
    assert raw - raw_before == 75
    added = {span: n - rollups_before.get(span, 0) for span, n in rollups.items()}
    assert added == {MINUTE: 75, HOUR: 75, DAY: 75}


def test_sigkill_of_an_instance_under_load_fails_no_client_and_loses_nothing(cluster):
    """Clients send document, blob and telemetry requests through nginx for a bounded run; one
    instance is SIGKILLed a third of the way in and restarted on its port."""
    victim = cluster.instances[1]
    raw_before, _ = stored_counts(cluster.settings)
    result: dict[str, object] = {}

    def traffic() -> None:
        result["report"] = asyncio.run(run_traffic(cluster.balancer, "digits", seconds=6, workers=6,
                                                   max_rounds=3000, events_per_batch=10))

    thread = threading.Thread(target=traffic)
    thread.start()
    time.sleep(2)
    victim.kill()
    time.sleep(1)
    victim.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    report = result["report"]
    print(report.summary())
    assert report.gets > 100 and report.batches > 50, report.summary()
    assert report.get_failures == [], report.get_failures[:5]
    assert report.batch_failures == [], report.batch_failures[:5]
    raw, rollups = stored_counts(cluster.settings)
    assert raw - raw_before == report.events_acknowledged, report.summary()  # none lost, none twice
    assert rollups == {MINUTE: raw, HOUR: raw, DAY: raw}
    for instance in cluster.instances:
        assert HTTP.get(f"{instance.url}/v1/models/digits/channels/stable.json").status_code == 200
    # The kill was felt: nginx found the victim dead and sent its requests elsewhere.
    log = cluster.balancer_log.read_text()
    assert f"upstream: \"http://{victim.address}" in log, log[-2000:]
