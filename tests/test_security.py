"""Issue 17: what an attacker or an unlucky operator found, each fixed and kept fixed.

Real servers on 127.0.0.1 (raw sockets where the HTTP client would hide the problem), a real full
disk (a tiny tmpfs, so these tests need root, as CI has), the real console script."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from browserml.errors import TokenError
from browserml.registry import Registry
from browserml.registry.blobs import BlobStore, iter_blobs
from browserml.server.app import create_app
from browserml.server.auth import ensure_admin_token, token_path
from conftest import server_settings

BROWSERML = Path(sys.executable).parent / "browserml"


# ------------------------------------------------------------------ helpers


@contextlib.contextmanager
def full_disk(where: Path, size: str = "256k") -> Iterator[Path]:
    """Mount a tiny tmpfs at ``where`` and yield it; fill it with :func:`fill` to make it full."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(folder: Path) -> None:
    """Write into ``folder`` until its file system has no byte left."""
    with (folder / ".filler").open("wb", buffering=0) as handle:
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0")


def raw_request(url: str, payload: bytes, timeout: float = 60) -> bytes:
    """Send ``payload`` on a fresh connection to the server at ``url``; return all it answers
    until it closes the connection (or ``timeout`` passes: a safety net, not a measurement)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(payload)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------ 1. admin token


@pytest.mark.parametrize("content", ["", "   \n", "\n\n", "short\n", "two words here, not a token\n"])
def test_an_empty_or_malformed_token_file_stops_the_server(tmp_path, content):
    settings = server_settings(tmp_path)
    token_path(settings.data_dir).parent.mkdir(parents=True)
    token_path(settings.data_dir).write_text(content)
    with pytest.raises(TokenError, match="empty or malformed; delete it"):
        create_app(settings)


def test_serve_says_one_line_about_an_empty_token_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin-token").write_text("")
    result = subprocess.run([str(BROWSERML), "serve", "--data-dir", str(data), "--port", "0"],
                            capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: admin token file"), result.stderr


def test_a_token_written_on_a_full_disk_leaves_no_empty_file(tmp_path):
    with full_disk(tmp_path / "disk") as disk:
        (disk / "data").mkdir()
        fill(disk)
        with pytest.raises(OSError):
            ensure_admin_token(disk / "data")
        assert not token_path(disk / "data").exists()
        assert [p.name for p in (disk / "data").iterdir()] == []


def test_the_token_is_created_whole_and_private(tmp_path):
    token = ensure_admin_token(tmp_path)
    assert len(token) >= 40
    assert oct(token_path(tmp_path).stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["admin-token"]
    assert ensure_admin_token(tmp_path) == token


def test_an_empty_presented_token_is_never_accepted(tmp_path, live_server):
    server = live_server(server_settings(tmp_path))
    for header in (b"Bearer ", b"Bearer", b"bearer  ", b"Bearer \t", b"Bearer \"\""):
        for method, path in ((b"GET", b"/v1/stats/models"), (b"DELETE", b"/v1/models/x/versions/1")):
            request = (method + b" " + path + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
                       b"authorization: " + header + b"\r\n\r\n")
            assert raw_request(server.url, request).startswith(b"HTTP/1.1 401 "), header


# ------------------------------------------------------------------ 2. request head size


def test_a_huge_request_head_is_refused_with_431(tmp_path, live_server):
    server = live_server(server_settings(tmp_path, max_header_bytes=16 * 1024))
    # 8 MiB of one header, sent in pieces: the server must answer before it has read it all.
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: ")
        with contextlib.suppress(OSError):
            for _ in range(128):
                sock.sendall(b"a" * 65536)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    # A head just under the limit, arriving in one piece with a body, is served.
    head = b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-pad: " + b"b" * 12000 + b"\r\n\r\n"
    assert raw_request(server.url, head).startswith(b"HTTP/1.1 200 ")
    # Just over the limit in one piece: refused too (the exact count of the parsed head).
    head = b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-pad: " + b"c" * 17000 + b"\r\n\r\n"
    assert raw_request(server.url, head).startswith(b"HTTP/1.1 431 ")
    # Many headers adding up past the limit.
    many = b"".join(b"x-h%d: %s\r\n" % (i, b"d" * 100) for i in range(200))
    answer = raw_request(server.url, b"GET / HTTP/1.1\r\nhost: x\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_large_body_after_a_small_head_is_not_mistaken_for_a_large_head(tmp_path, live_server):
    server = live_server(server_settings(tmp_path, max_header_bytes=4096))
    body = b"[" + b",".join([b'{"type":"init","model":"nobody"}'] * 400) + b"]"
    answer = httpx.post(f"{server.url}/v1/telemetry", content=body + b" " * 200_000,
                        headers={"content-type": "text/plain"})
    assert answer.status_code != 431


# ------------------------------------------------------------------ 3. slow clients, connection cap, fds


def test_a_half_sent_request_head_is_dropped_with_408(tmp_path, live_server):
    server = live_server(server_settings(tmp_path, header_timeout_s=1.0))
    assert raw_request(server.url, b"GET /v1/models HTTP/1.1\r\nhost: x\r\n").startswith(b"HTTP/1.1 408 ")
    # A connection that sends nothing at all is dropped the same way.
    assert raw_request(server.url, b"").startswith(b"HTTP/1.1 408 ")
    # A slow but complete request on a keep-alive connection is still served.
    answer = raw_request(server.url, b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_past_the_connection_cap_new_connections_get_503_and_a_log_line(tmp_path, live_server, caplog):
    server = live_server(server_settings(tmp_path, max_connections=5, header_timeout_s=60.0))
    host, port = server.url.removeprefix("http://").split(":")
    held = [socket.create_connection((host, int(port)), timeout=60) for _ in range(5)]
    try:
        # The fifth is only counted once the server accepted it: make sure all five are in.
        for sock in held:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        with caplog.at_level("WARNING", logger="browserml.server"):
            refused = raw_request(server.url, b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 503 "), refused[:100]
        assert any("BROWSERML_MAX_CONNECTIONS" in r.getMessage() for r in caplog.records)
    finally:
        for sock in held:
            sock.close()
    # Once they are gone the server serves again.
    for _ in range(50):
        answer = raw_request(server.url, b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        if answer.startswith(b"HTTP/1.1 200 "):
            break
    assert answer.startswith(b"HTTP/1.1 200 ")


def _limited_fds(limit: int, max_connections: int) -> subprocess.CompletedProcess:
    code = ("from browserml.server.protocol import check_file_limit\n"
            f"print(check_file_limit({max_connections}))\n")

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          preexec_fn=lower, env=os.environ, timeout=60)


def test_the_file_descriptor_limit_is_checked_at_start(tmp_path):
    refused = _limited_fds(256, 1000)
    assert refused.returncode != 0
    assert "BROWSERML_MAX_CONNECTIONS=1000 needs 1064" in refused.stderr
    fits = _limited_fds(256, 150)
    assert fits.returncode == 0, fits.stderr
    assert int(fits.stdout) == 256


def test_serve_refuses_to_start_with_too_few_file_descriptors(tmp_path):
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    result = subprocess.run([str(BROWSERML), "serve", "--data-dir", str(tmp_path / "d"), "--port", "0"],
                            capture_output=True, text=True, timeout=120, preexec_fn=lower)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and "ulimit -n" in lines[0], result.stderr


# ------------------------------------------------------------------ shared: a published registry


@pytest.fixture
def published(tmp_path, make_build):
    """Settings of a SQLite registry with ``digits`` v1 on stable (memory cache on)."""
    settings = server_settings(tmp_path)
    with Registry(settings) as registry:
        registry.publish(make_build(seed=1), "digits", channel="stable")
    return settings


@pytest.fixture
def published_db(tmp_path, make_build, database_url):
    """Like ``published``, once on SQLite and once on PostgreSQL."""
    settings = server_settings(tmp_path, database_url=database_url)
    with Registry(settings) as registry:
        registry.publish(make_build(seed=1), "digits", channel="stable")
    return settings


def admin(settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {ensure_admin_token(settings.data_dir)}"}


# ------------------------------------------------------------------ 5. bad text in telemetry


def test_a_lone_surrogate_costs_its_text_not_the_batch(published, live_server):
    server = live_server(published)
    events = [{"type": "error", "model": "digits", "reason": "boom \ud83d"},
              {"type": "error", "model": "digits", "backend": "web\udc00gl"}]
    events += [{"type": "init", "model": "digits"}] * 39
    body = json.dumps(events)  # json.dumps writes the lone surrogates as \\ud83d escapes
    answer = httpx.post(f"{server.url}/v1/telemetry", content=body, headers={"content-type": "text/plain"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 40 and answer.json()["dropped"] == 1
    store = server.server.config.app.state.telemetry.store
    assert store.count_events() == 40
    assert store.count_events("reason = ?", ("boom \ufffd",)) == 1


@pytest.mark.parametrize("body", [
    b"[" + b"[" * 1000 + b"]" * 1000 + b"]",
    b'[{"type":"init","model":"digits","x":' + b"[" * 1000 + b"]" * 1000 + b"}]",
])
def test_deeply_nested_telemetry_is_a_400(published, live_server, body):
    server = live_server(published)
    answer = httpx.post(f"{server.url}/v1/telemetry", content=body)
    assert answer.status_code == 400 and "nested too deep" in answer.json()["error"]


def test_a_huge_integer_costs_its_event_not_the_batch(published, live_server):
    server = live_server(published)
    body = (b'[{"type":"init","model":"digits","version":' + b"9" * 5000
            + b'},{"type":"init","model":"digits"}]')
    answer = httpx.post(f"{server.url}/v1/telemetry", content=body)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1 and answer.json()["dropped"] == 1


# ------------------------------------------------------------------ 9. stats and admin values


@pytest.mark.parametrize("since", ["²", "٣", "1" * 40, "99999999999999d", "9999999999999999", "1e999",
                                   "99999-01-01", "-5m"])
def test_odd_stats_windows_are_400s(published, live_server, since):
    server = live_server(published)
    answer = httpx.get(f"{server.url}/v1/stats", params={"model": "digits", "since": since},
                       headers=admin(published))
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert "since" in answer.json()["error"]


def test_huge_stats_windows_are_clamped_not_500s(published, live_server):
    server = live_server(published)
    for params in ({"since": "99999999d"}, {"since": "0", "until": "999999999999999"}):
        answer = httpx.get(f"{server.url}/v1/stats", params={"model": "digits", **params},
                           headers=admin(published))
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("version", [2**63, 1.9, "1.9", True, "²", -1, "", [1], {"a": 1}])
def test_invalid_admin_values_are_400s(published, live_server, version):
    server = live_server(published)
    answer = httpx.post(f"{server.url}/v1/models/digits/channels/stable", json={"version": version},
                        headers=admin(published))
    assert answer.status_code == 400, (version, answer.text)
    assert "version must be an integer" in answer.json()["error"]
    answer = httpx.post(f"{server.url}/v1/models/digits/channels/stable",
                        json={"version": 1, "percent": 101}, headers=admin(published))
    assert answer.status_code == 400 and "percent" in answer.json()["error"]
    answer = httpx.post(f"{server.url}/v1/models/digits/versions", params={"version": str(2**63)},
                        headers=admin(published), files={"x": ("x", b"x")})
    assert answer.status_code == 400
    answer = httpx.delete(f"{server.url}/v1/models/digits/versions/{2**63}", headers=admin(published))
    assert answer.status_code == 400


# ------------------------------------------------------------------ 9. blobs on a bad disk


def _blob(settings, server_url: str, variant: str = "float32", role: str = "weights") -> tuple[str, Path]:
    manifest = httpx.get(f"{server_url}/v1/models/digits/manifest").json()
    entry = next(v for v in manifest["variants"] if v["name"] == variant)
    sha = next(f for f in entry["files"] if f["role"] == role)["sha256"]
    return sha, BlobStore(Path(settings.data_dir) / "blobs").path(sha)


def test_a_corrupted_blob_is_never_served(published, live_server):
    server = live_server(published)
    sha, path = _blob(published, server.url)
    httpx.head(f"{server.url}/v1/blobs/{sha}")  # the stat is cached before the damage
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    answer = httpx.get(f"{server.url}/v1/blobs/{sha}")
    assert answer.status_code == 503 and "integrity" in answer.json()["error"]


@pytest.mark.parametrize("before", ["head", "downloaded"])
def test_a_deleted_blob_is_a_404_and_a_restored_one_is_served_again(published, live_server, before):
    """Deleted after a HEAD (its files looked up) or after full downloads (its bytes in memory
    and answered in the protocol, :mod:`browserml.server.downloads`): 404 either way."""
    server = live_server(published)
    sha, path = _blob(published, server.url)
    original = path.read_bytes()
    httpx.head(f"{server.url}/v1/blobs/{sha}")
    if before == "downloaded":
        for _ in range(2):
            answer = httpx.get(f"{server.url}/v1/blobs/{sha}", headers={"accept-encoding": "identity"})
            assert answer.content == original
    path.unlink()
    for headers in ({}, {"range": "bytes=0-3"}, {"accept-encoding": "identity"}):
        answer = httpx.get(f"{server.url}/v1/blobs/{sha}", headers=headers)
        assert answer.status_code == 404, (headers, answer.status_code)
    path.write_bytes(original)
    answer = httpx.get(f"{server.url}/v1/blobs/{sha}", headers={"accept-encoding": "identity"})
    assert answer.status_code == 200 and answer.content == original


def test_a_deleted_compressed_copy_is_recreated(published, live_server):
    server = live_server(published)
    sha, path = _blob(published, server.url, role="model")  # model.json: JSON compresses well
    compressed = path.with_name(path.name + ".br")
    assert compressed.is_file()
    httpx.head(f"{server.url}/v1/blobs/{sha}", headers={"accept-encoding": "br"})
    compressed.unlink()
    answer = httpx.get(f"{server.url}/v1/blobs/{sha}", headers={"accept-encoding": "br"})
    assert answer.status_code == 200
    assert hashlib.sha256(answer.content).hexdigest() == sha
    assert compressed.is_file()
    again = httpx.get(f"{server.url}/v1/blobs/{sha}", headers={"accept-encoding": "br"})
    assert again.headers["content-encoding"] == "br"


# ------------------------------------------------------------------ 4. telemetry scoping


def post_events(url: str, events: list[dict], client: str | None = None) -> httpx.Response:
    params = {"client": client} if client else {}
    return httpx.post(f"{url}/v1/telemetry", content=json.dumps(events), params=params,
                      headers={"content-type": "text/plain"})


def stats(settings, url: str, **params) -> dict:
    answer = httpx.get(f"{url}/v1/stats", params={"model": "digits", "since": "1h", **params},
                       headers=admin(settings))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_events_about_unknown_models_or_versions_are_dropped_and_counted(published_db, live_server):
    published = published_db
    server = live_server(published)
    fake_models = [{"type": "error", "model": f"fake-{i}"} for i in range(300)]
    answer = post_events(server.url, fake_models)
    assert answer.status_code == 200 and answer.json()["accepted"] == 0 and answer.json()["unknown"] == 300
    mixed = [{"type": "init", "model": "digits"},                       # version not known yet: kept
             {"type": "predict", "model": "digits", "version": 1, "ms": 3.0},
             {"type": "error", "model": "digits", "version": 7},        # no such version
             {"type": "error", "model": "nope", "version": 1}]
    answer = post_events(server.url, mixed)
    assert answer.json()["accepted"] == 2 and answer.json()["unknown"] == 2
    listed = httpx.get(f"{server.url}/v1/stats/models", headers=admin(published)).json()["models"]
    assert listed == ["digits"]
    total = stats(published, server.url)["total"]
    assert total["events"]["error"] == 0 and total["count"] == 2
    metrics = httpx.get(f"{server.url}/metrics", headers=admin(published)).text
    assert 'browserml_telemetry_events_unknown_total{model="(unknown)"} 301.0' in metrics
    assert 'browserml_telemetry_events_unknown_total{model="digits"} 1.0' in metrics


def test_a_publish_through_the_server_is_known_to_telemetry_at_once(published, make_build, live_server):
    server = live_server(published)
    assert post_events(server.url, [{"type": "init", "model": "other", "version": 1}]).json()["accepted"] == 0
    build = make_build(seed=5, name="other")
    files = [(p.relative_to(build).as_posix(), (p.name, p.read_bytes()))
             for p in sorted(build.rglob("*")) if p.is_file()]
    assert httpx.post(f"{server.url}/v1/models/other/versions", files=files,
                      headers=admin(published)).status_code == 201
    assert post_events(server.url, [{"type": "init", "model": "other", "version": 1}]).json()["accepted"] == 1


def test_label_values_outside_the_known_sets_roll_up_as_other(published, live_server):
    server = live_server(published)
    base = {"type": "predict", "model": "digits", "version": 1, "ms": 5.0}
    events = [{**base, "backend": "wasm", "variant": "uint8", "engine": "tfjs",
               "device": "desktop-2c-8g-coi"}]
    events += [{**base, "backend": f"evil-{i}", "variant": f"v{i}", "engine": f"e{i}",
                "device": f"dev-{i}"} for i in range(200)]
    assert post_events(server.url, events).json()["accepted"] == 201
    for dimension, good in (("backend", "wasm"), ("variant", "uint8"), ("engine", "tfjs"),
                            ("device", "desktop-2c-8g-coi")):
        groups = {g["key"]: g["count"] for g in stats(published, server.url, group_by=dimension)["groups"]}
        assert groups == {good: 1, "other": 200}, (dimension, groups)


def test_one_noisy_client_does_not_starve_the_others_behind_one_address(published, live_server):
    """20 browsers behind one proxy (one address, each its own client id) and one of them
    flooding: the flooder is refused by its own bucket, every other browser's posts pass."""
    # A slow refill (one event per 1,000 s), so what the flooder gets is its burst, however slow
    # the machine; the defaults refill at 200 events/s.
    settings = published.model_copy(update={"telemetry_client_rate": 0.001})
    server = live_server(settings)
    batch = [{"type": "predict", "model": "digits", "version": 1, "ms": 2.0}] * 300
    flood = [post_events(server.url, batch[:250] * 2, client="flooder-0000").status_code for _ in range(20)]
    # A client's weight in the rollups is bounded by its bucket: 2,000 events = 4 batches of 500.
    assert flood == [200] * 4 + [429] * 16
    good = [post_events(server.url, batch, client=f"browser-{i:04d}").status_code for i in range(20)]
    assert good == [200] * 20


def test_stats_say_how_many_distinct_clients_and_addresses_sent_the_events(published_db, live_server):
    published = published_db
    server = live_server(published)
    event = [{"type": "predict", "model": "digits", "version": 1, "ms": 2.0}] * 10
    for client in ("client-aaaa", "client-bbbb", "client-cccc", "client-aaaa"):
        assert post_events(server.url, event, client=client).status_code == 200
    assert post_events(server.url, event).status_code == 200  # no id: counted as its address
    body = stats(published, server.url)
    assert body["total"]["count"] == 50
    assert (body["clients"], body["addresses"]) == (4, 1)


def test_the_dashboard_shows_clients_and_a_bad_refresh_does_not_spin(published, live_server):
    from browserml.browser import launch_browser
    from browserml.settings import Settings

    settings = published.model_copy(update={"web_dir": Settings().web_dir})
    server = live_server(settings)
    event = [{"type": "predict", "model": "digits", "version": 1, "ms": 2.0}] * 5
    for client in ("client-aaaa", "client-bbbb", "client-cccc"):
        assert post_events(server.url, event, client=client).status_code == 200
    token = ensure_admin_token(settings.data_dir)
    with launch_browser() as context:
        page = context.new_page()
        summaries = []
        page.on("request", lambda r: summaries.append(r.url) if "/v1/stats/models" in r.url else None)
        page.goto(f"{server.url}/dashboard/?refresh=abc#token={token}")
        page.wait_for_function("document.body.dataset.state === 'ready'")
        shown = page.text_content("#t-clients")
        page.wait_for_timeout(3000)  # a 10 s refresh makes no second round in 3 s; NaN made ~250
    assert shown == "15 / 3 / 1"
    assert len(summaries) == 1, len(summaries)


# ------------------------------------------------------------------ 6. a full disk


def test_registry_reads_keep_working_on_a_full_disk(tmp_path, make_build, live_server):
    build = make_build(seed=1)
    with full_disk(tmp_path / "disk", size="16m") as disk:
        settings = server_settings(tmp_path, data_dir=disk / "data")
        with Registry(settings) as registry:
            registry.publish(build, "digits", channel="stable")
        server = live_server(settings)
        manifest = httpx.get(f"{server.url}/v1/models/digits/manifest")
        assert manifest.status_code == 200
        fill(disk)
        for _ in range(3):
            again = httpx.get(f"{server.url}/v1/models/digits/manifest")
            assert again.status_code == 200, again.text
            assert again.json() == manifest.json()
            assert httpx.get(f"{server.url}/v1/models").status_code == 200
        url = manifest.json()["variants"][0]["files"][0]["url"]
        assert httpx.get(f"{server.url}{url}").status_code == 200
        server.stop()


# ------------------------------------------------------------------ 7. leftovers of crashed publishes


HOLD_FILE = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


def test_leftovers_of_dead_publishes_are_removed_at_start_and_live_ones_kept(published, live_server):
    data = Path(published.data_dir)
    dead_tmp = data / "blobs" / "tmp" / ".blob-dead"
    dead_tmp.write_bytes(b"x" * 100_000)
    dead_upload = data / "uploads" / "digits-dead"
    (dead_upload / "uint8").mkdir(parents=True)
    (dead_upload / "uint8" / "model.json").write_bytes(b"y" * 50_000)
    live_tmp = data / "blobs" / "tmp" / ".blob-live"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_FILE, str(live_tmp)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # another process is writing it
        server = live_server(published)
        assert not dead_tmp.exists() and not dead_upload.exists()
        assert live_tmp.exists()
        assert httpx.get(f"{server.url}/v1/models/digits/manifest").status_code == 200
    finally:
        holder.kill()
        holder.wait()


def test_gc_finds_unreferenced_blobs_and_deletes_only_with_delete(published, make_build, tmp_path):
    from browserml.registry.gc import publishing

    with Registry(published) as registry:
        before = set(iter_blobs(registry.blobs))
        orphan_build = make_build(seed=9)  # what a publish killed after its blobs leaves
        for path in sorted(orphan_build.rglob("*.bin")):
            registry.blobs.put_file(path, hashlib.sha256(path.read_bytes()).hexdigest())
        orphans = set(iter_blobs(registry.blobs)) - before
        assert orphans

    dry = subprocess.run([str(BROWSERML), "gc", "--json", "--data-dir", str(published.data_dir)],
                         capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    found = json.loads(dry.stdout)
    assert set(found["blobs"]) == orphans and not found["deleted"]
    with Registry(published) as registry:
        assert set(iter_blobs(registry.blobs)) == before | orphans  # a dry run deletes nothing

    # An in-flight publish: its blob is written, its version not yet committed. gc waits for it.
    in_flight = make_build(seed=11)
    with Registry(published) as registry:
        lock = publishing(registry.blobs)
        lock.__enter__()
        shards = sorted(in_flight.rglob("*"))
        for path in shards:
            if path.is_file() and path.name != "variants.json":
                registry.blobs.put_file(path, hashlib.sha256(path.read_bytes()).hexdigest())
        collector = subprocess.Popen([str(BROWSERML), "gc", "--delete", "--json", "--data-dir",
                                      str(published.data_dir)], stdout=subprocess.PIPE, text=True)
        try:
            registry.publish(in_flight, "digits", version=2)  # re-entrant: same process, shared lock
        finally:
            lock.__exit__(None, None, None)
        out, _ = collector.communicate(timeout=120)
        assert collector.returncode == 0
        deleted = json.loads(out)
        assert set(deleted["blobs"]) == orphans and deleted["deleted"]
        left = set(iter_blobs(registry.blobs))
        assert not left & orphans
        for version in (1, 2):
            manifest = registry.version_manifest("digits", version)
            for variant in manifest["variants"]:
                for entry in variant["files"]:
                    assert registry.blobs.path(entry["sha256"]).is_file()
    assert "would delete" in subprocess.run(
        [str(BROWSERML), "gc", "--data-dir", str(published.data_dir)], capture_output=True, text=True,
        timeout=120).stdout
