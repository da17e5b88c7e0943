"""The HTTP contract the SDK relies on, run against BOTH origins that can answer it: a real
``browserml serve`` and Debian's real nginx serving the tree ``browserml export`` wrote from the
same registry (issue 20). Every test is parametrized over the two; neither may skip.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import brotli
import httpx
import pytest

from browserml import nginx
from browserml.export import NGINX_FILE, export
from browserml.registry import Registry
from browserml.server.models import encode_json, with_document_urls
from browserml.server.run import free_port, start_in_thread
from browserml.settings import PROJECT_ROOT, Settings
from browserml.vendor import runtime_files
from conftest import server_settings, write_synthetic_build

WASM = b"\x00asm\x01\x00\x00\x00" + bytes(range(64))
ISOLATION = {
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
    "x-content-type-options": "nosniff",
}
CANARY_PERCENT = 30


@dataclass
class Published:
    """A registry with digits v1 on stable, v2 as a 30 % canary of stable, v2 on canary."""

    settings: Settings
    root: Path
    documents: dict[str, bytes]


def stub_node_modules(root: Path) -> Path:
    """Every listed runtime file, small (a real wasm header for wasm files), plus a file that is
    in a package but not on the list (which neither origin may serve)."""
    for file in runtime_files():
        target = file.source(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(WASM if file.path.endswith(".wasm") else f"// {file.relpath}\n".encode())
    (root / "@tensorflow" / "tfjs" / "dist" / "tf.min.js.map").write_text("{}")
    return root


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    root = tmp_path_factory.mktemp("contract")
    settings = server_settings(root, node_modules=stub_node_modules(root / "node_modules"))
    with Registry(settings) as registry:
        registry.publish(write_synthetic_build(root / "b1", seed=1), "digits", channel="stable")
        registry.publish(write_synthetic_build(root / "b2", seed=7), "digits", channel="canary")
        registry.promote("digits", 2, "stable", CANARY_PERCENT)
        documents = {channel: encode_json(with_document_urls(registry.channel_document("digits", channel)))
                     for channel in ("stable", "canary")}
    return Published(settings, root, documents)


@pytest.fixture(scope="module", params=["serve", "nginx"])
def origin(request: pytest.FixtureRequest, published: Published) -> Iterator[str]:
    """The base URL of ``browserml serve`` or of nginx serving the export, on 127.0.0.1."""
    if request.param == "serve":
        server = start_in_thread(published.settings)
        yield server.url
        server.stop()
        return
    port = free_port()
    out = published.root / "export"
    export(published.settings, out, listen=f"127.0.0.1:{port}")
    with nginx.start_nginx(published.root / "nginx", (out / NGINX_FILE).read_text(), port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def client(origin: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=origin, timeout=10) as http:
        yield http


def blobs(document: dict) -> list[dict]:
    files = [f for v in document["variants"] for f in v["files"]]
    return files + [f for v in document["rollout"]["manifest"]["variants"] for f in v["files"]]


def test_channel_document_bytes_caching_and_revalidation(client, published):
    for channel in ("stable", "canary"):
        response = client.get(f"/v1/models/digits/channels/{channel}.json")
        assert response.status_code == 200
        assert response.content == published.documents[channel]
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "public, max-age=30"
        assert response.headers["cross-origin-resource-policy"] == "same-origin"
        assert all(response.headers[k] == v for k, v in ISOLATION.items())
        etag = response.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        again = client.get(f"/v1/models/digits/channels/{channel}.json", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["etag"] == etag and again.content == b""
        assert again.headers["cache-control"] == "public, max-age=30"
    stable = json.loads(published.documents["stable"])
    assert stable["version"] == 1
    assert stable["rollout"]["version"] == 2 and stable["rollout"]["percent"] == CANARY_PERCENT
    for path in ("/v1/models/nope/channels/stable.json", "/v1/models/digits/channels/beta.json",
                 "/v1/blobs/" + "0" * 64, "/v1/blobs/not-a-hash", "/nothing-here"):
        assert client.get(path).status_code == 404, path


def test_blobs_are_the_bytes_with_immutable_headers_etag_and_304(client, published):
    for file in blobs(json.loads(published.documents["stable"])):
        response = client.get(file["url"], headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == file["sha256"]
        assert len(response.content) == file["bytes"] == int(response.headers["content-length"])
        headers = response.headers
        assert headers["content-type"] == "application/octet-stream"
        assert headers["cache-control"] == "public, max-age=31536000, immutable"
        assert headers["cross-origin-resource-policy"] == "cross-origin"
        assert all(headers[k] == v for k, v in ISOLATION.items())
        assert "content-encoding" not in headers and "Accept-Encoding" in headers["vary"]
        etag = headers["etag"]
        again = client.get(file["url"], headers={"If-None-Match": etag, "Accept-Encoding": "identity"})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["cache-control"] == "public, max-age=31536000, immutable"
        head = client.head(file["url"], headers={"Accept-Encoding": "identity"})
        assert head.status_code == 200 and int(head.headers["content-length"]) == file["bytes"]


def test_range_requests_get_identity_bytes(client, published):
    file = max(blobs(json.loads(published.documents["stable"])), key=lambda f: f["bytes"])
    whole = client.get(file["url"], headers={"Accept-Encoding": "identity"}).content
    part = client.get(file["url"], headers={"Range": "bytes=5-20", "Accept-Encoding": "gzip, br"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 5-20/{file['bytes']}"
    assert "content-encoding" not in part.headers
    assert part.content == whole[5:21]
    tail = client.get(file["url"], headers={"Range": f"bytes={file['bytes'] - 4}-"})
    assert tail.status_code == 206 and tail.content == whole[-4:]
    outside = client.get(file["url"], headers={"Range": f"bytes={file['bytes'] + 10}-"})
    assert outside.status_code == 416


def test_compressed_copies_follow_accept_encoding(client, published):
    document = json.loads(published.documents["stable"])
    model_json = next(f for f in blobs(document) if f["path"].endswith("model.json"))  # compresses
    tflite = next(f for f in blobs(document) if f["path"].endswith(".tflite"))  # random: does not
    decode = {"br": brotli.decompress, "gzip": gzip.decompress}
    for accept, expected in (("gzip, deflate, br", "br"), ("gzip", "gzip"), ("br", "br"), ("identity", None)):
        with client.stream("GET", model_json["url"], headers={"Accept-Encoding": accept}) as response:
            raw = b"".join(response.iter_raw())
        assert response.status_code == 200
        assert response.headers.get("content-encoding") == expected, accept
        body = decode[expected](raw) if expected else raw
        assert hashlib.sha256(body).hexdigest() == model_json["sha256"]
        assert len(raw) < model_json["bytes"] if expected else len(raw) == model_json["bytes"]
    plain = client.get(tflite["url"], headers={"Accept-Encoding": "gzip, br"})
    assert "content-encoding" not in plain.headers
    assert hashlib.sha256(plain.content).hexdigest() == tflite["sha256"]


def test_sdk_and_runtime_files_are_served_with_isolation_headers(client, published):
    sdk = client.get("/sdk/browserml.js")
    assert sdk.status_code == 200
    assert sdk.content == (Path(published.settings.sdk_dir) / "browserml.js").read_bytes()
    assert sdk.headers["content-type"] == "text/javascript; charset=utf-8"
    assert sdk.headers["cross-origin-resource-policy"] == "same-origin"
    assert all(sdk.headers[k] == v for k, v in ISOLATION.items())
    assert client.get("/sdk/browserml.js", headers={"If-None-Match": sdk.headers["etag"]}).status_code == 304
    for file in runtime_files():
        response = client.get(file.url_path)
        assert response.status_code == 200, file.url_path
        assert response.content == file.source(published.settings.node_modules).read_bytes()
        assert all(response.headers[k] == v for k, v in ISOLATION.items())
        expected = "application/wasm" if file.path.endswith(".wasm") else "text/javascript; charset=utf-8"
        assert response.headers["content-type"] == expected, file.url_path
    assert client.get("/vendor/@tensorflow/tfjs/dist/tf.min.js.map").status_code == 404
    assert client.get("/vendor/left-pad/index.js").status_code == 404


def test_cors_echoes_only_allowed_origins(client):
    allowed = client.get("/v1/models/digits/channels/stable.json", headers={"Origin": "https://allowed.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://allowed.example"
    assert "ETag" in allowed.headers["access-control-expose-headers"]
    evil = client.get("/v1/models/digits/channels/stable.json", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers


def test_the_sdk_assigns_every_client_the_version_the_server_picks(client, published):
    """The SDK's canary.js (run in node) on the document this origin serves, against the server's
    own per-client assignment (``?client=``) for the same 200 client ids."""
    ids = [f"client-{i}" for i in range(200)]
    document = client.get("/v1/models/digits/channels/stable.json").text
    script = (
        "import { pickManifest } from './sdk/src/canary.js';\n"
        "const [doc, ids] = JSON.parse(require_input);\n"
        "const out = []; for (const id of ids) out.push((await pickManifest(doc, id)).version);\n"
        "console.log(JSON.stringify(out));\n"
    ).replace("require_input", "process.argv[1]")
    argument = json.dumps([json.loads(document), ids])
    result = subprocess.run(["node", "--input-type=module", "-e", script, argument],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True)
    sdk_versions = json.loads(result.stdout)
    with Registry(published.settings) as registry:
        server_versions = [registry.manifest("digits", "stable", i)["version"] for i in ids]
    assert sdk_versions == server_versions
    assert 0 < server_versions.count(2) < len(ids)
