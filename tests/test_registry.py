"""The registry on SQLite and PostgreSQL: publish, channels, canaries, refusals, atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from browserml.errors import (
    FormatError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    RegistryError,
)
from browserml.registry import Registry
from browserml.registry.blobs import iter_blobs
from browserml.registry.db import Database, VersionExistsError
from browserml.variants import describe_file, read_build, sha256_file, write_build


@pytest.fixture
def registry(registry_settings):
    with Registry(registry_settings) as reg:
        yield reg


def test_publish_lists_versions_and_orders_variants(registry, make_build):
    first = registry.publish(make_build(seed=1), "digits", channel="stable")
    second = registry.publish(make_build(seed=2), "digits")

    assert (first.version, second.version) == (1, 2)
    [model] = registry.list()
    assert [v["version"] for v in model["versions"]] == [1, 2]
    assert model["channels"]["stable"]["version"] == 1
    manifest = registry.manifest("digits", "stable")
    assert manifest["version"] == 1
    assert [v["name"] for v in manifest["variants"]] == ["uint8", "float32", "tflite-float32"]
    uint8 = manifest["variants"][0]
    assert [f["path"] for f in uint8["files"]] == ["model.json", "group1-shard1of1.bin"]
    for entry in uint8["files"]:
        assert sha256_file(registry.blobs.path(entry["sha256"])) == entry["sha256"]
        assert registry.blobs.path(entry["sha256"]).stat().st_size == entry["bytes"]


def test_explicit_version_is_immutable(registry, make_build):
    registry.publish(make_build(seed=1), "digits", version=7)
    with pytest.raises(VersionExistsError, match="version 7 already exists"):
        registry.publish(make_build(seed=2), "digits", version=7)
    assert registry.publish(make_build(seed=3), "digits").version == 8


def test_promote_and_rollback(registry, make_build):
    # The first version onto canary, so stable's history starts with the promotions below.
    for seed in (1, 2, 3):
        registry.publish(make_build(seed=seed), "digits", channel="canary" if seed == 1 else None)
    registry.promote("digits", 1, "stable")
    registry.promote("digits", 3, "stable")
    assert registry.manifest("digits", "stable")["version"] == 3

    assert registry.rollback("digits", "stable").version == 1
    assert registry.manifest("digits", "stable")["version"] == 1
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("digits", "stable")
    assert registry.manifest("digits", "stable")["version"] == 1
    with pytest.raises(NotFoundError):
        registry.promote("digits", 9, "stable")


def test_canary_percentage_is_stable_per_client(registry, make_build):
    registry.publish(make_build(seed=1), "digits", channel="stable")
    registry.publish(make_build(seed=2), "digits")
    state = registry.promote("digits", 2, "stable", percent=30)
    assert (state.version, state.percent, state.base_version) == (2, 30, 1)

    clients = [f"client-{i}" for i in range(400)]
    at_30 = {c for c in clients if registry.manifest("digits", "stable", c)["version"] == 2}
    assert 0.2 < len(at_30) / len(clients) < 0.4
    assert registry.manifest("digits", "stable")["version"] == 1  # no id: the safe version
    registry.promote("digits", 2, "stable", percent=60)
    at_60 = {c for c in clients if registry.manifest("digits", "stable", c)["version"] == 2}
    assert at_30 < at_60 and 0.5 < len(at_60) / len(clients) < 0.7

    assert registry.rollback("digits", "stable").percent == 30
    with pytest.raises(RegistryError, match="between 1 and 100"):
        registry.promote("digits", 2, "stable", percent=0)


def test_accuracy_budget_decides_what_is_offered(registry, make_build):
    registry.publish(make_build(), "digits", channel="stable", accuracy_budget_pp=0.1)
    manifest = registry.manifest("digits")
    assert [v["name"] for v in manifest["variants"]] == ["float32", "tflite-float32"]
    assert manifest["not_offered"] == [
        {"name": "uint8", "reason": "accuracy loss 0.3 pp exceeds the 0.1 pp budget"}
    ]


def test_delete_refuses_a_served_version(registry, make_build):
    registry.publish(make_build(seed=1), "digits", channel="stable")
    registry.publish(make_build(seed=2), "digits")
    with pytest.raises(RegistryError, match="served by channel 'stable'"):
        registry.delete("digits", 1)
    registry.delete("digits", 2)
    assert [v["version"] for v in registry.list()[0]["versions"]] == [1]
    with pytest.raises(NotFoundError):
        registry.delete("digits", 2)


def test_first_publish_goes_on_stable_later_ones_leave_channels_alone(registry, make_build):
    first = registry.publish(make_build(seed=1), "digits")
    assert first.channel == "stable"
    assert registry.manifest("digits", "stable")["version"] == 1
    second = registry.publish(make_build(seed=2), "digits")
    assert second.channel is None
    assert registry.manifest("digits", "stable")["version"] == 1
    third = registry.publish(make_build(seed=3), "digits", channel="canary")
    assert third.channel == "canary" and registry.manifest("digits", "stable")["version"] == 1
    # A model whose first version was asked onto canary has no stable until promoted.
    other = registry.publish(make_build(seed=4), "other", channel="canary")
    assert other.channel == "canary"
    with pytest.raises(NotFoundError, match="no channel 'stable'"):
        registry.manifest("other", "stable")


def test_unknown_model_channel_version(registry, make_build):
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        registry.manifest("nope")
    registry.publish(make_build(), "digits", channel="canary")
    with pytest.raises(NotFoundError, match="no channel 'stable'"):
        registry.manifest("digits", "stable")
    with pytest.raises(NotFoundError, match="no version 5"):
        registry.version_manifest("digits", 5)


def test_reopen_keeps_everything(registry_settings, make_build):
    with Registry(registry_settings) as reg:
        reg.publish(make_build(seed=1), "digits", channel="stable")
        reg.publish(make_build(seed=2), "digits", channel="canary")
        before = reg.list(), reg.manifest("digits", "canary")
    with Registry(registry_settings) as reg:
        assert (reg.list(), reg.manifest("digits", "canary")) == before


# ------------------------------------------------------------------ bad input, nothing written


def assert_nothing_written(registry: Registry) -> None:
    assert registry.list() == []
    assert list(iter_blobs(registry.blobs)) == []


def rewrite_entry(build_dir: Path, rel: str) -> None:
    """Re-describe one file in variants.json after the test changed it on purpose."""
    build = read_build(build_dir)
    for variant in build.variants:
        for index, entry in enumerate(variant.files):
            if entry.path == rel:
                variant.files[index] = describe_file(build_dir, build_dir / rel, entry.role)
    write_build(build_dir, build)


def test_missing_shard_is_refused(registry, make_build):
    build = make_build()
    (build / "uint8" / "group1-shard1of1.bin").unlink()
    with pytest.raises(IntegrityError, match=r"uint8/group1-shard1of1.bin: missing"):
        registry.publish(build, "digits")
    assert_nothing_written(registry)


def test_wrong_sha256_is_refused(registry, make_build):
    build = make_build()
    shard = build / "float32" / "group1-shard1of1.bin"
    data = bytearray(shard.read_bytes())
    data[0] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"sha256 .* does not match variants\.json"):
        registry.publish(build, "digits")
    assert_nothing_written(registry)


def test_weight_bytes_must_match_shapes(registry, make_build):
    build = make_build()
    model_path = build / "float32" / "model.json"
    model = json.loads(model_path.read_text())
    model["weightsManifest"][0]["weights"][0]["shape"] = [4, 4]  # 64 bytes, shard holds 60
    model_path.write_text(json.dumps(model))
    rewrite_entry(build, "float32/model.json")
    with pytest.raises(FormatError, match="need 76 bytes but its shards hold 60"):
        registry.publish(build, "digits")
    assert_nothing_written(registry)


def test_unlisted_shard_is_refused(registry, make_build):
    build = make_build()
    model_path = build / "uint8" / "model.json"
    model = json.loads(model_path.read_text())
    model["weightsManifest"][0]["paths"] = ["group1-shard9of9.bin"]
    model_path.write_text(json.dumps(model))
    rewrite_entry(build, "uint8/model.json")
    with pytest.raises(FormatError, match=r"'group1-shard9of9\.bin' is not listed"):
        registry.publish(build, "digits")
    assert_nothing_written(registry)


def test_tflite_needs_its_magic(registry, make_build):
    build = make_build()
    tflite = build / "tflite-float32" / "model.tflite"
    tflite.write_bytes(b"\x1c\x00\x00\x00NOPE" + tflite.read_bytes()[8:])
    rewrite_entry(build, "tflite-float32/model.tflite")
    with pytest.raises(FormatError, match="not a TFLite flatbuffer"):
        registry.publish(build, "digits")
    assert_nothing_written(registry)


def test_paths_may_not_leave_the_build(registry, make_build, tmp_path):
    build = make_build()
    data = json.loads((build / "variants.json").read_text())
    data["variants"][0]["files"][1]["path"] = "../outside.bin"
    (tmp_path / "outside.bin").write_bytes((build / "float32" / "group1-shard1of1.bin").read_bytes())
    (build / "variants.json").write_text(json.dumps(data))
    with pytest.raises(FormatError, match="must be relative and stay inside the build"):
        registry.publish(build, "digits")
    assert_nothing_written(registry)


@pytest.mark.parametrize(
    "name", ["Digits", "../etc", "a/b", "", "a" * 65, "digits\n", "dig its", "dígits", ".."]
)
def test_bad_names_are_refused(registry, make_build, name):
    with pytest.raises(InvalidNameError, match=r"is not \[a-z0-9-\]\{1,64\}"):
        registry.publish(make_build(), name)
    assert_nothing_written(registry)


def test_bad_channel_name_is_refused(registry, make_build):
    with pytest.raises(InvalidNameError, match="channel"):
        registry.publish(make_build(), "digits", channel="../stable")
    assert_nothing_written(registry)


# ------------------------------------------------------------------ atomicity


def test_failure_between_blobs_and_commit_leaves_no_version(registry, make_build, monkeypatch):
    original = Database._record_version

    def record_then_fail(self, run, model, version, build):
        original(self, run, model, version, build)  # the row exists inside the transaction...
        raise OSError("disk vanished")  # ...and the commit never comes

    monkeypatch.setattr(Database, "_record_version", record_then_fail)
    with pytest.raises(OSError, match="disk vanished"):
        registry.publish(make_build(), "digits", channel="stable")
    monkeypatch.undo()
    assert registry.list() == []
    with pytest.raises(NotFoundError):
        registry.manifest("digits")
    assert registry.publish(make_build(), "digits").version == 1


KILLED_PUBLISH = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from browserml.registry import Registry
    from browserml.registry.db import Database
    from browserml.settings import Settings

    data_dir, database_url, build_dir, ready = sys.argv[1:5]
    original = Database._record_version

    def record_and_hang(self, run, model, version, build):
        original(self, run, model, version, build)
        Path(ready).write_text("in transaction")
        time.sleep(600)

    Database._record_version = record_and_hang
    settings = Settings(data_dir=data_dir, database_url=database_url or None)
    Registry(settings).publish(Path(build_dir), "digits", channel="stable")
    """
)


def test_killed_publish_leaves_no_version(registry_settings, make_build, tmp_path):
    ready = tmp_path / "ready"
    args = [str(registry_settings.data_dir), registry_settings.database_url or "",
            str(make_build()), str(ready)]
    child = subprocess.Popen([sys.executable, "-c", KILLED_PUBLISH, *args])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, "publisher exited before reaching the transaction"
            assert time.monotonic() < deadline, "publisher never reached the transaction"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with Registry(registry_settings) as reg:
        assert reg.list() == []
        assert list(iter_blobs(reg.blobs))  # blobs were written first: orphans, harmless
        published = reg.publish(make_build(), "digits", channel="stable")
        assert published.version == 1
        assert reg.manifest("digits")["version"] == 1
