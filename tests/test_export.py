"""``browserml export`` (issue 20): incremental, documents written only after their blobs, object
metadata that says what each file needs, and one-line errors from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from browserml import export as export_module
from browserml.export import OBJECTS_FILE, PUBLIC, export
from browserml.registry import Registry
from conftest import server_settings, write_synthetic_build
from test_cli import assert_one_line_error, run_cli
from test_contract import stub_node_modules


@pytest.fixture
def settings(tmp_path: Path):
    settings = server_settings(tmp_path, node_modules=stub_node_modules(tmp_path / "node_modules"))
    with Registry(settings) as registry:
        registry.publish(write_synthetic_build(tmp_path / "b1", seed=1), "digits", channel="stable")
    return settings


def test_export_copies_only_new_blobs_and_writes_documents_after_them(settings, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = export(settings, out)
    assert first.documents == ["v1/models/digits/channels/stable.json"]
    assert first.blobs_new == 5 and first.blobs_kept == 0 and first.runtime_copied > 0
    again = export(settings, out)
    assert again.blobs_new == 0 and again.blobs_kept == 5 and again.runtime_copied == 0

    with Registry(settings) as registry:
        registry.publish(write_synthetic_build(tmp_path / "b2", seed=9), "digits", channel="canary")
        registry.promote("digits", 2, "stable", 20)
    public = out / PUBLIC
    seen: list[str] = []
    write = export_module._write_atomic

    def checked_write(target: Path, data: bytes) -> None:
        if target.suffix == ".json" and "channels" in target.parts:
            document = json.loads(data)
            manifests = [document, *([document["rollout"]["manifest"]] if "rollout" in document else [])]
            for manifest in manifests:
                for variant in manifest["variants"]:
                    for file in variant["files"]:
                        assert (public / file["url"].lstrip("/")).is_file(), "document before its blob"
            seen.append(target.name)
        write(target, data)

    monkeypatch.setattr(export_module, "_write_atomic", checked_write)
    third = export(settings, out)
    assert sorted(seen) == ["canary.json", "stable.json"]
    stable = json.loads((public / "v1/models/digits/channels/stable.json").read_bytes())
    manifests = (stable, stable["rollout"]["manifest"])
    named = {f["sha256"] for m in manifests for v in m["variants"] for f in v["files"]}
    assert third.blobs_kept == 5 and third.blobs_new == len(named) - 5 > 0  # v2 shares v1's model.json
    assert not list(public.rglob(".export-*")), "no temp file left behind"
    assert stable["version"] == 1 and stable["rollout"] == {**stable["rollout"], "version": 2, "percent": 20}


def test_object_metadata_names_each_files_headers(settings, tmp_path):
    out = tmp_path / "out"
    export(settings, out, listen="127.0.0.1:9999")
    metadata = json.loads((out / OBJECTS_FILE).read_text())
    objects = metadata["objects"]
    files = {p.relative_to(out / PUBLIC).as_posix() for p in (out / PUBLIC).rglob("*") if p.is_file()}
    assert set(objects) == files
    blob = next(k for k in objects if k.startswith("v1/blobs/") and k.endswith(".br"))
    assert objects[blob] == {"Content-Type": "application/octet-stream", "Content-Encoding": "br",
                             "Cache-Control": "public, max-age=31536000, immutable"}
    assert objects[blob.removesuffix(".br")]["Content-Type"] == "application/octet-stream"
    assert "Content-Encoding" not in objects[blob.removesuffix(".br")]
    assert objects["v1/models/digits/channels/stable.json"] == {
        "Content-Type": "application/json", "Cache-Control": "public, max-age=30"}
    assert objects["sdk/browserml.js"] == {"Content-Type": "text/javascript; charset=utf-8"}
    assert metadata["response_headers"]["/v1/blobs/"]["cross-origin-resource-policy"] == "cross-origin"
    assert "listen 127.0.0.1:9999;" in (out / "nginx.conf").read_text()


def test_cli_export_refuses_what_it_cannot_do_in_one_line(settings, tmp_path):
    data = ["--data-dir", settings.data_dir]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the output folder should go")
    assert_one_line_error(run_cli("export", "--model", "nope", tmp_path / "x", *data),
                          "no model named 'nope'")
    assert_one_line_error(run_cli("export", "--model", "digits", "--channel", "beta", tmp_path / "x", *data),
                          "no channel 'beta'")
    assert_one_line_error(run_cli("export", blocked / "out", *data), "pick a writable --out")
