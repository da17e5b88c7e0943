"""The HTTP server, for real: uvicorn on 127.0.0.1, httpx as the client."""

from __future__ import annotations

import gzip
import hashlib
import json
import stat
from pathlib import Path

import brotli
import httpx
import pytest

from browserml.registry import Registry
from browserml.server.auth import token_path
from browserml.settings import Settings
from conftest import server_settings

ISOLATION = {
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
}


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Like ``registry_settings`` but SQLite only, for tests about HTTP rather than storage."""
    return server_settings(tmp_path, max_upload_bytes=64 * 1024)


@pytest.fixture
def published(sqlite_settings, make_build):
    """A registry with digits v1 on stable; returns the settings."""
    with Registry(sqlite_settings) as reg:
        reg.publish(make_build(seed=1), "digits", channel="stable")
    return sqlite_settings


def admin_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_path(settings.data_dir).read_text().strip()}"}


def upload_files(build: Path) -> list[tuple[str, tuple[str, bytes]]]:
    """The multipart parts of a build upload: field name = path inside the build."""
    return [
        (path.relative_to(build).as_posix(), (path.name, path.read_bytes()))
        for path in sorted(build.rglob("*"))
        if path.is_file()
    ]


def blob_url(manifest: dict, variant: str, role: str) -> tuple[str, dict]:
    entry = next(v for v in manifest["variants"] if v["name"] == variant)
    file = next(f for f in entry["files"] if f["role"] == role)
    return file["url"], file


# ------------------------------------------------------------------ manifest


def test_manifest_caching_and_blob_integrity(published, live_server):
    server = live_server(published)
    with httpx.Client(base_url=server.url) as client:
        response = client.get("/v1/models/digits/manifest", params={"channel": "stable"})
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=30"
        etag = response.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        manifest = response.json()
        assert manifest["version"] == 1 and manifest["labels"] == ["a", "b", "c"]
        assert manifest["preprocessing"]["rescale"] == "in-model"

        again = client.get("/v1/models/digits/manifest", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""

        for variant in manifest["variants"]:
            for file in variant["files"]:
                body = client.get(file["url"], headers={"Accept-Encoding": "identity"}).content
                assert hashlib.sha256(body).hexdigest() == file["sha256"]
                assert len(body) == file["bytes"]


def test_unknown_things_are_json_404s(published, live_server):
    server = live_server(published)
    with httpx.Client(base_url=server.url) as client:
        cases = {
            "/v1/models/nope/manifest": "no model named 'nope'",
            "/v1/models/digits/manifest?channel=canary": "no channel 'canary'",
            f"/v1/blobs/{'0' * 64}": "no blob",
            "/v1/blobs/not-a-hash": "named by their sha256",
            "/v1/nothing-here": "Not Found",
        }
        for path, message in cases.items():
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/json"
            assert message in response.json()["error"], path
        for name in ("..", "Digits", "a%2F..%2Fb", "%2e%2e"):
            response = client.get(f"/v1/models/{name}/manifest")
            assert response.status_code in (400, 404), name
            assert "error" in response.json()


# ------------------------------------------------------------------ blobs


@pytest.mark.parametrize("memory_cache", [True, False], ids=["memory-cache", "from-file"])
def test_blob_headers_etag_and_range(published, live_server, memory_cache):
    if not memory_cache:
        published = published.model_copy(update={"blob_cache_bytes": 0})
    server = live_server(published)
    with httpx.Client(base_url=server.url) as client:
        manifest = client.get("/v1/models/digits/manifest").json()
        url, file = blob_url(manifest, "float32", "weights")
        identity = {"Accept-Encoding": "identity"}
        response = client.get(url, headers=identity)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["etag"] == f'"{file["sha256"]}"'
        assert response.headers["cross-origin-resource-policy"] == "cross-origin"
        assert response.headers["accept-ranges"] == "bytes"
        assert "content-encoding" not in response.headers
        for name, value in ISOLATION.items():
            assert response.headers[name] == value

        not_modified = client.get(url, headers={"If-None-Match": f'"{file["sha256"]}"'})
        assert not_modified.status_code == 304 and not_modified.content == b""
        assert not_modified.headers["etag"] == f'"{file["sha256"]}"'
        other = client.get(url, headers={"If-None-Match": '"something-else"', **identity})
        assert other.status_code == 200

        part = client.get(url, headers={"Range": "bytes=10-19", **identity})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 10-19/{file['bytes']}"
        assert part.content == response.content[10:20]
        beyond = client.get(url, headers={"Range": f"bytes={file['bytes'] + 5}-", **identity})
        assert beyond.status_code == 416

        head = client.head(url, headers=identity)
        assert head.status_code == 200 and head.headers["content-length"] == str(file["bytes"])
        assert client.post(url).status_code == 405


def test_blobs_are_compressed_only_where_smaller(published, live_server):
    server = live_server(published)
    with httpx.Client(base_url=server.url) as client:
        manifest = client.get("/v1/models/digits/manifest").json()
        url, file = blob_url(manifest, "float32", "model")  # JSON: compresses well
        for coding, decode in (("br", brotli.decompress), ("gzip", gzip.decompress)):
            with client.stream("GET", url, headers={"Accept-Encoding": coding}) as response:
                raw = b"".join(response.iter_raw())
            assert response.headers["content-encoding"] == coding
            assert "Accept-Encoding" in response.headers["vary"]
            assert len(raw) < file["bytes"]
            assert hashlib.sha256(decode(raw)).hexdigest() == file["sha256"]
        prefers = client.get(url, headers={"Accept-Encoding": "gzip, br"})
        assert prefers.headers["content-encoding"] == "br"
        refused = client.get(url, headers={"Accept-Encoding": "br;q=0, gzip"})
        assert refused.headers["content-encoding"] == "gzip"

        tflite_url, _ = blob_url(manifest, "tflite-float32", "model")  # random bytes
        response = client.get(tflite_url, headers={"Accept-Encoding": "br, gzip"})
        assert "content-encoding" not in response.headers


# ------------------------------------------------------------------ pages


def test_pages_are_cross_origin_isolated(published, live_server):
    server = live_server(published)
    with httpx.Client(base_url=server.url) as client:
        sdk = client.get("/sdk/browserml.js")
        assert sdk.status_code == 200 and "javascript" in sdk.headers["content-type"]
        demo = client.get("/demo", follow_redirects=True)
        assert demo.status_code == 200 and "<title>demo</title>" in demo.text
        tfjs = client.get("/vendor/@tensorflow/tfjs/dist/tf.min.js")
        assert tfjs.status_code == 200 and len(tfjs.content) > 100_000
        wasm = client.get("/vendor/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm")
        assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
        for response in (sdk, demo, tfjs, wasm):
            for name, value in ISOLATION.items():
                assert response.headers[name] == value
            assert response.headers["cross-origin-resource-policy"] == "same-origin"
        for path in (
            "/vendor/@tensorflow/tfjs/package.json",  # not a runtime file
            "/vendor/@tensorflow/tfjs-core/dist/tf-core.min.js",  # not allowlisted
            "/vendor/@tensorflow/tfjs/dist/%2e%2e/package.json",
            "/vendor/left-pad/dist/index.js",
            "/sdk/..%2f..%2fpyproject.toml",
        ):
            assert client.get(path).status_code == 404, path


# npm build leftovers that exist in node_modules beside the runtime files (issue 17, item 9): an
# HTML page with inline scripts, source maps, type declarations, a TypeScript build cache, bundles
# the SDK never loads. On the dashboard's origin they are a 404.
LEFTOVERS = (
    "@tensorflow/tfjs/dist/tf.min.js.html",
    "@tensorflow/tfjs/dist/tsconfig.tsbuildinfo",
    "@tensorflow/tfjs/dist/tf.min.js.map",
    "@tensorflow/tfjs/dist/index.d.ts",
    "@tensorflow/tfjs/dist/tf.es2017.js",
    "@litertjs/core/dist/index.js.map",
    "@litertjs/core/dist/index.d.ts",
    "@litertjs/core/wasm/litert_wasm_jspi_internal.wasm",
    "chart.js/dist/chart.umd.js.map",
    "@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm.js",
)


def test_vendor_serves_only_the_listed_runtime_files(published, live_server):
    from browserml import vendor
    from browserml.settings import get_settings

    node_modules = get_settings().node_modules
    server = live_server(published)
    with httpx.Client(base_url=server.url) as client:
        for relpath in LEFTOVERS:
            assert (node_modules / relpath).is_file(), f"{relpath}: pick a leftover that exists"
            assert client.get(f"/vendor/{relpath}").status_code == 404, relpath
        listed = vendor.runtime_files()
        assert not any(f.relpath in LEFTOVERS for f in listed)
        for entry in listed:
            response = client.head(entry.url_path)
            assert response.status_code == 200, entry.url_path
            assert int(response.headers["content-length"]) == entry.source(node_modules).stat().st_size


def test_cors_only_for_allowlisted_origins(published, live_server):
    server = live_server(published)
    with httpx.Client(base_url=server.url) as client:
        allowed = client.get("/v1/models/digits/manifest",
                             headers={"Origin": "https://allowed.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://allowed.example"
        assert "etag" in allowed.headers["access-control-expose-headers"].lower()
        other = client.get("/v1/models/digits/manifest", headers={"Origin": "https://evil.example"})
        assert other.status_code == 200
        assert "access-control-allow-origin" not in other.headers


# ------------------------------------------------------------------ admin


def test_admin_needs_the_token_and_says_nothing_more(published, live_server):
    server = live_server(published)
    mode = stat.S_IMODE(token_path(published.data_dir).stat().st_mode)
    assert mode == 0o600
    calls = [
        ("POST", "/v1/models/digits/channels/stable", {"json": {"version": 1}}),
        ("POST", "/v1/models/digits/channels/stable/rollback", {}),
        ("DELETE", "/v1/models/digits/versions/1", {}),
        ("POST", "/v1/models/digits/versions", {"files": {"variants.json": b"{}"}}),
        ("POST", "/v1/models/BAD..NAME/versions", {"content": b"x"}),
    ]
    token = token_path(published.data_dir).read_text().strip()
    bad_headers = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": token},
                   {"Authorization": f"Basic {token}"}, {"Authorization": f"Bearer {token}x"}]
    with httpx.Client(base_url=server.url) as client:
        for method, path, kwargs in calls:
            for headers in bad_headers:
                response = client.request(method, path, headers=headers, **kwargs)
                assert response.status_code == 401, (method, path, headers)
                assert response.json() == {"error": "unauthorized"}
        assert client.get("/v1/models/digits/manifest").json()["version"] == 1


def test_publish_promote_rollback_over_http(registry_settings, make_build, live_server):
    server = live_server(registry_settings)
    auth = admin_headers(registry_settings)
    with httpx.Client(base_url=server.url, headers=auth) as client:
        first = client.post("/v1/models/digits/versions", params={"channel": "stable"},
                            files=upload_files(make_build(seed=1)))
        assert first.status_code == 201, first.text
        assert first.json() == {"name": "digits", "version": 1}
        second = client.post("/v1/models/digits/versions", files=upload_files(make_build(seed=2)))
        assert second.json()["version"] == 2
        v1_etag = client.get("/v1/models/digits/manifest").headers["etag"]

        promoted = client.post("/v1/models/digits/channels/stable", json={"version": 2})
        assert promoted.json() == {"channel": "stable", "version": 2, "percent": 100,
                                   "base_version": None}
        manifest = client.get("/v1/models/digits/manifest", headers={"If-None-Match": v1_etag})
        assert manifest.status_code == 200 and manifest.json()["version"] == 2

        canary = client.post("/v1/models/digits/channels/stable",
                             json={"version": 1, "percent": 50})
        assert canary.json()["base_version"] == 2
        versions = {client.get("/v1/models/digits/manifest",
                               params={"client": f"c{i}"}).json()["version"] for i in range(40)}
        assert versions == {1, 2}

        assert client.post("/v1/models/digits/channels/stable/rollback").json()["version"] == 2
        assert client.delete("/v1/models/digits/versions/2").status_code == 409
        assert client.delete("/v1/models/digits/versions/1").status_code == 204
        listed = client.get("/v1/models").json()["models"]
        assert [v["version"] for v in listed[0]["versions"]] == [2]
        bad = client.post("/v1/models/digits/channels/stable", json={"version": "two"})
        assert bad.status_code == 400 and "version must be an integer" in bad.json()["error"]
        assert client.post("/v1/models/digits/channels/stable",
                           json={"version": 99}).status_code == 404


def test_bad_uploads_are_refused_with_the_reason(published, make_build, live_server):
    server = live_server(published)
    with httpx.Client(base_url=server.url, headers=admin_headers(published)) as client:
        build = make_build(seed=5)
        parts = [p for p in upload_files(build) if not p[0].endswith("uint8/group1-shard1of1.bin")]
        missing = client.post("/v1/models/digits/versions", files=parts)
        assert missing.status_code == 422
        assert missing.json()["error"] == "uint8/group1-shard1of1.bin: missing (variant uint8)"

        escaping = [("../../evil.bin", ("evil.bin", b"x")), *upload_files(build)]
        refused = client.post("/v1/models/digits/versions", files=escaping)
        assert refused.status_code == 422 and "stay inside" in refused.json()["error"]

        bad_name = client.post("/v1/models/Digits/versions", files=upload_files(build))
        assert bad_name.status_code == 400

        huge = client.post("/v1/models/digits/versions",
                           files=[("variants.json", ("v", b"{" + b" " * 70_000 + b"}"))])
        assert huge.status_code == 413
        assert "exceeds the 65536 byte limit" in huge.json()["error"]

        listed = client.get("/v1/models").json()["models"]
        assert [v["version"] for v in listed[0]["versions"]] == [1]
    assert not any((published.data_dir / "uploads").iterdir())


# ------------------------------------------------------------------ restart


def test_restart_keeps_everything(registry_settings, make_build, live_server):
    with Registry(registry_settings) as reg:
        reg.publish(make_build(seed=1), "digits", channel="stable")
        reg.publish(make_build(seed=2), "digits")
        reg.promote("digits", 2, "stable", percent=40)
    first = live_server(registry_settings)
    token = token_path(registry_settings.data_dir).read_text()
    with httpx.Client(base_url=first.url) as client:
        before = [client.get("/v1/models/digits/manifest", params={"client": f"c{i}"}).json()
                  for i in range(10)]
        url = before[0]["variants"][0]["files"][1]["url"]
        blob = client.get(url).content
    first.stop()

    second = live_server(registry_settings)
    assert token_path(registry_settings.data_dir).read_text() == token
    with httpx.Client(base_url=second.url, headers=admin_headers(registry_settings)) as client:
        after = [client.get("/v1/models/digits/manifest", params={"client": f"c{i}"}).json()
                 for i in range(10)]
        assert after == before
        assert client.get(url).content == blob
        back = client.post("/v1/models/digits/channels/stable/rollback")
        assert back.json()["version"] == 1
        assert json.loads(client.get("/v1/models/digits/manifest").content)["version"] == 1
