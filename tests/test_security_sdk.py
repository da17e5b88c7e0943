"""Issue 17, the SDK's side, in real Chromium against a real server with the real digits model:
a manifest entry pointing at another valid file, and a server answering 5xx to a returning
browser that has every file cached."""

from __future__ import annotations

import json
import sqlite3

import numpy as np

from browserml.browser import launch_browser
from browserml.registry import Registry
from browserml.variants import read_build
from test_sdk import CLASSIFY_ALL, b64, count_correct, open_blank


def test_a_manifest_naming_another_valid_file_cannot_load_wrong_weights(
        digits_build, sdk_server_factory, digit_pngs, tmp_path):
    """The manifest's uint8 shard entry is pointed (sha256 and size) at another valid blob of the
    same size. The bytes match the manifest, but not what the content-addressed model.json
    vouches for: the SDK refuses uint8 and answers with float16, reporting why."""
    server = sdk_server_factory(digits_build)
    build = read_build(digits_build)
    shard = next(f for f in build.variant("uint8").files if f.role == "weights")
    weights = np.frombuffer((digits_build / shard.path).read_bytes(), dtype=np.uint8)
    forged = tmp_path / "forged.bin"
    forged.write_bytes(np.random.default_rng(0).permutation(weights).tobytes())
    import hashlib

    forged_sha = hashlib.sha256(forged.read_bytes()).hexdigest()
    with Registry(server.settings) as registry:
        registry.blobs.put_file(forged, forged_sha)  # a valid blob: its name is its hash
    db = sqlite3.connect(server.settings.database_path)
    (release,) = db.execute("SELECT build FROM versions WHERE model = 'digits' AND version = 1").fetchone()
    release = json.loads(release)
    for variant in release["manifest"]["variants"]:
        for entry in variant["files"]:
            if entry["sha256"] == shard.sha256:
                entry["sha256"] = forged_sha
    db.execute("UPDATE versions SET build = ? WHERE model = 'digits' AND version = 1", (json.dumps(release),))
    db.commit()
    db.close()

    with launch_browser() as context:
        page = open_blank(context, server.url)
        out = page.evaluate(CLASSIFY_ALL, [[b64(png) for _, png in digit_pngs], {}])
    assert {a["variant"] for a in out["answers"]} == {"float16"}
    assert count_correct(digit_pngs, out["answers"]) >= 95
    fallbacks = [e for e in out["events"] if e["type"] == "fallback"]
    assert [f["fromVariant"] for f in fallbacks] == ["uint8"]
    assert fallbacks[0]["code"] == "integrity" and "vouches" in fallbacks[0]["reason"]


def test_a_returning_browser_loads_from_its_cache_when_the_manifest_answers_5xx(
        digits_build, sdk_server_factory, digit_pngs):
    server = sdk_server_factory(digits_build)
    pngs = [b64(png) for _, png in digit_pngs[:20]]
    with launch_browser() as context:
        page = open_blank(context, server.url)
        first = page.evaluate(CLASSIFY_ALL, [pngs, {}])
        page.route("**/v1/models/digits/channels/*", lambda route: route.fulfill(
            status=500, content_type="application/json", body='{"error": "database or disk is full"}'))
        page.reload()
        again = page.evaluate(CLASSIFY_ALL, [pngs, {}])
    assert first["stats"]["load"]["manifestSource"] == "network"
    assert again["stats"]["load"]["manifestSource"] == "stale-cache"
    assert again["stats"]["load"]["fromNetwork"] == 0
    assert count_correct(digit_pngs[:20], again["answers"]) >= 19
    fallback = [e for e in again["events"] if e["type"] == "fallback" and e.get("phase") == "manifest"]
    assert len(fallback) == 1 and "HTTP 500" in fallback[0]["reason"] and fallback[0]["to"] == "stale-cache"
