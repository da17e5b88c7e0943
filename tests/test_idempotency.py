"""Telemetry idempotency keys (issue 20), on SQLite and PostgreSQL: a batch is stored once per key,
within one group commit, across group commits and through the HTTP endpoint; rollups count it once."""

from __future__ import annotations

import dataclasses
import random

import httpx

from browserml.bench.traffic import telemetry_batch
from browserml.registry import Registry
from browserml.telemetry.batch import receive
from browserml.telemetry.stats import DAY, MINUTE
from browserml.telemetry.store import open_store


def prepared(seed: int, n: int, key: str | None):
    body = telemetry_batch("digits", 1, n, random.Random(seed))
    batch = receive(body, 500, 1_700_000_000_000).batch
    return dataclasses.replace(batch, key=key)


def test_the_store_keeps_one_batch_per_key(registry_settings):
    store = open_store(registry_settings)
    try:
        group = [prepared(1, 5, "k-1"), prepared(1, 5, "k-1"), prepared(2, 7, None), prepared(3, 3, "k-2")]
        assert store.commit_each(group) == [True, False, True, True]
        assert store.commit_each([prepared(1, 5, "k-1"), prepared(4, 2, None)]) == [False, True]
        assert store.commit([prepared(3, 3, "k-2")]) == 0
        assert store.count_events() == 5 + 7 + 3 + 2
        _, total = store.summary("digits", 1_700_000_000_000 - DAY, 1_700_000_000_000 + MINUTE, None)
        assert total[0] == 17  # n_events in the rollups: duplicates not counted either
    finally:
        store.close()


def test_the_endpoint_acknowledges_a_retry_without_storing_it(registry_settings, live_server, make_build):
    with Registry(registry_settings) as registry:  # telemetry is accepted for published models only
        registry.publish(make_build(seed=1), "digits", channel="stable")
    server = live_server(registry_settings)
    body = telemetry_batch("digits", 1, 4, random.Random(5))
    with httpx.Client(base_url=server.url) as http:
        first = http.post("/v1/telemetry?batch=0b9e8c1e-1", content=body)
        retry = http.post("/v1/telemetry?batch=0b9e8c1e-1", content=body)
        keyless = http.post("/v1/telemetry", content=body)
        bad = http.post("/v1/telemetry?batch=" + "x" * 65, content=body)
    assert first.json() == {"accepted": 4, "dropped": 0, "errors": []}
    assert retry.json() == {"accepted": 4, "dropped": 0, "errors": [], "duplicate": True}
    assert keyless.status_code == 200 and "duplicate" not in keyless.json()
    assert bad.status_code == 400 and "batch key" in bad.json()["error"]
    store = server.server.config.app.state.telemetry.store
    assert store.count_events() == 8
