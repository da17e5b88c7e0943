"""Full blob downloads sent from the HTTP protocol with sendfile (``server/downloads.py``), on a
real uvicorn server over real sockets: the very head the ASGI path sends, the right bytes, and
keep-alive, pipelining, ``Connection: close``, HTTP/1.0 and clients that leave mid-body behave as
they do through ASGI; every other blob request still reaches the app."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import struct
import time

import brotli
import httpx
import pytest

from browserml.registry import Registry
from browserml.server.blobs import BlobApp
from browserml.server.run import start_in_thread
from conftest import server_settings

BIG = 8 * 1024 * 1024  # more than loopback's socket buffers hold: sending must wait for the client


@pytest.fixture(params=["memory", "disk"])
def blobs(request, tmp_path, make_build, live_server):
    """A server with digits v1 published and an 8 MiB incompressible blob stored; returns
    (server, {"weights": sha, "compressed": a blob with a .br copy, "big": sha}, the store).
    Run twice: verified bytes kept in memory (written from there) and dropped (sendfile)."""
    settings = server_settings(tmp_path)
    with Registry(settings) as registry:
        registry.publish(make_build(seed=1), "digits", channel="stable")
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(BIG))
        big_sha = hashlib.sha256(big.read_bytes()).hexdigest()
        registry.blobs.put_file(big, big_sha)
        store = registry.blobs
    server = live_server(settings)
    manifest = httpx.get(f"{server.url}/v1/models/digits/manifest").json()
    files = [f for v in manifest["variants"] for f in v["files"]]
    weights = next(f["sha256"] for f in files if f["role"] == "weights")
    compressed = next(f["sha256"] for f in files if store.path(f["sha256"], "br").is_file())
    if request.param == "disk":  # verified files whose bytes the memory cache dropped: sendfile
        memory = server.server.config.app.front.blobs._memory
        memory._add = lambda _path, _body: None  # verified (and served) but never kept
    return server, {"weights": weights, "compressed": compressed, "big": big_sha}, store


def request(path: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=20)


class Reader:
    """Reads HTTP/1.1 responses (Content-Length bodies) off one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def _more(self) -> None:
        chunk = self.sock.recv(1 << 20)
        assert chunk, "connection closed early"
        self.buffer += chunk

    def response(self, method: str = "GET") -> tuple[int, list[str], dict[str, str], bytes]:
        """Return (status, raw header lines, headers, body) of the next response."""
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = 0 if method == "HEAD" or status_line.split()[1] == "304" else \
            int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), [status_line, *lines], headers, body

    def closed(self) -> bool:
        """True when the server closed the connection (after what was read), False if open."""
        self.sock.settimeout(2)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False


def without_date(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.lower().startswith("date:")]


def refuse_the_app(monkeypatch) -> None:
    """From now on, a blob request that reaches the ASGI blob app fails the test."""

    async def refuse(*_args, **_kwargs):
        raise AssertionError("the ASGI blob app was called")

    monkeypatch.setattr(BlobApp, "serve", refuse)


@pytest.mark.parametrize("role,accept", [("weights", None), ("compressed", "br"), ("big", "gzip, br")])
def test_a_download_from_the_protocol_is_the_one_the_app_sends(blobs, monkeypatch, role, accept):
    server, shas, _ = blobs
    sha = shas[role]
    extra = [f"Accept-Encoding: {accept}"] if accept else []
    with connect(server.url) as sock:
        reader = Reader(sock)
        sock.sendall(request(f"/v1/blobs/{sha}", *extra))
        first = reader.response()  # the app's: it reads the file and checks its hash
        refuse_the_app(monkeypatch)
        for _ in range(2):  # then twice from the protocol, on the same keep-alive connection
            sock.sendall(request(f"/v1/blobs/{sha}", *extra))
            again = reader.response()
            assert again[0] == 200
            assert without_date(again[1]) == without_date(first[1])  # byte for byte, same order
            assert [line.split(":")[0] for line in again[1]][1] == "date"  # uvicorn's, first
            assert again[3] == first[3]
        assert not reader.closed()
    encoding = first[2].get("content-encoding")
    assert encoding == ("br" if role == "compressed" else None)
    body = first[3]
    if encoding == "br":
        body = brotli.decompress(body)
    assert hashlib.sha256(body).hexdigest() == sha


def test_pipelined_requests_are_answered_in_order(blobs):
    server, shas, _ = blobs
    big, weights = f"/v1/blobs/{shas['big']}", f"/v1/blobs/{shas['weights']}"
    for path in (big, weights):
        assert httpx.get(f"{server.url}{path}").status_code == 200  # verified by the app
    payload = b"".join([
        request(big),  # from the protocol, waits for the client several times...
        request(weights),  # ...while these queue behind it
        request("/v1/models/digits/manifest"),
        request(big, f'If-None-Match: "{shas["big"]}"'),
        request(weights, method="HEAD"),
        request(weights, "Range: bytes=0-9"),
        request(big),
    ])
    methods = ["GET", "GET", "GET", "GET", "HEAD", "GET", "GET"]
    with connect(server.url) as sock:
        sock.sendall(payload)
        reader = Reader(sock)
        answers = [reader.response(method) for method in methods]
        assert not reader.closed()
    assert [a[0] for a in answers] == [200, 200, 200, 304, 200, 206, 200]
    for index, sha in ((0, shas["big"]), (1, shas["weights"]), (6, shas["big"])):
        assert hashlib.sha256(answers[index][3]).hexdigest() == sha
    assert b'"variants"' in answers[2][3]
    assert answers[4][2]["content-length"] == answers[1][2]["content-length"]
    assert answers[5][3] == answers[1][3][:10]


@pytest.mark.parametrize("ask", [("1.1", "Connection: close"), ("1.0", "X-Nothing: 1")],
                         ids=["connection-close", "http-1.0"])
def test_a_download_then_close_when_asked(blobs, monkeypatch, ask):
    server, shas, _ = blobs
    version, header = ask
    path = f"/v1/blobs/{shas['big']}"
    assert httpx.get(f"{server.url}{path}").status_code == 200
    refuse_the_app(monkeypatch)
    with connect(server.url) as sock:
        sock.sendall(request(path, header, version=version))
        reader = Reader(sock)
        status, _, headers, body = reader.response()
        assert status == 200 and headers["connection"] == "close"
        assert hashlib.sha256(body).hexdigest() == shas["big"]
        assert reader.closed()


def test_other_blob_requests_still_reach_the_app(blobs):
    server, shas, _ = blobs
    sha = shas["big"]
    url = f"{server.url}/v1/blobs/{sha}"
    with httpx.Client() as client:
        full = client.get(url)
        assert full.status_code == 200
        head = client.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(BIG)
        ranged = client.get(url, headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 206 and ranged.content == full.content[10:20]
        missing = client.get(f"{server.url}/v1/blobs/{'0' * 64}")
        assert missing.status_code == 404 and "error" in missing.json()
        cors = client.get(url, headers={"Origin": "https://allowed.example"})
        assert cors.status_code == 200 and cors.content == full.content
        assert cors.headers["access-control-allow-origin"] == "https://allowed.example"
        assert "Content-Length" in cors.headers["access-control-expose-headers"]
        stranger = client.get(url, headers={"Origin": "https://other.example"})
        assert "access-control-allow-origin" not in stranger.headers


def test_the_first_download_is_the_apps_so_a_bad_file_is_never_sent(blobs):
    server, shas, store = blobs
    path = store.path(shas["big"])
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    for _ in range(2):
        answer = httpx.get(f"{server.url}/v1/blobs/{shas['big']}")
        assert answer.status_code == 503 and "integrity" in answer.json()["error"]


def test_a_file_changed_after_its_check_is_not_sent_from_disk(blobs):
    server, shas, store = blobs
    url = f"{server.url}/v1/blobs/{shas['weights']}"
    good = httpx.get(url, headers={"accept-encoding": "identity"}).content
    path = store.path(shas["weights"])
    path.write_bytes(b"\0" * len(good))  # same size, new mtime
    for _ in range(2):
        answer = httpx.get(url, headers={"accept-encoding": "identity"})
        # The checked bytes (still in memory), or a 503 once the changed file is read again.
        assert (answer.status_code, answer.content) == (200, good) or answer.status_code == 503
        assert answer.content != b"\0" * len(good)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_clients_that_leave_mid_body_leave_nothing_behind(blobs, monkeypatch):
    """The server shares this process: every descriptor a download opened (its file, the
    duplicate of the socket watched for writability) is closed once its client is gone."""
    server, shas, _ = blobs
    path = f"/v1/blobs/{shas['big']}"
    assert httpx.get(f"{server.url}{path}").status_code == 200
    refuse_the_app(monkeypatch)
    baseline = open_fds()
    for reset in (True, False, True):
        sock = connect(server.url)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(request(path))
        received = len(sock.recv(65536))
        assert 0 < received < BIG  # the server is mid-body, waiting for this client
        if reset:  # RST, as a crashed client or a closed tab does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    deadline = time.monotonic() + 15
    while open_fds() > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_fds() <= baseline
    answer = httpx.get(f"{server.url}{path}")  # and the server goes on serving
    assert answer.status_code == 200 and hashlib.sha256(answer.content).hexdigest() == shas["big"]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_with_the_access_log_on_every_blob_request_is_logged(tmp_path, make_build):
    """``serve --access-log``: downloads and revalidations then go through ASGI, which logs
    them (an answer made in the protocol would write no line)."""
    settings = server_settings(tmp_path)
    with Registry(settings) as registry:
        registry.publish(make_build(seed=1), "digits", channel="stable")
    lines = Lines()
    with start_in_thread(settings, access_log=True) as server:
        log = logging.getLogger("uvicorn.access")
        level = log.level
        log.addHandler(lines)
        log.setLevel(logging.INFO)  # start_in_thread runs uvicorn at "warning"
        try:
            manifest = httpx.get(f"{server.url}/v1/models/digits/manifest").json()
            sha = next(f["sha256"] for v in manifest["variants"] for f in v["files"]
                       if f["role"] == "weights")
            url = f"{server.url}/v1/blobs/{sha}"
            with httpx.Client() as client:
                statuses = [client.get(url).status_code, client.get(url).status_code,
                            client.get(url, headers={"If-None-Match": f'"{sha}"'}).status_code]
        finally:
            log.removeHandler(lines)
            log.setLevel(level)
    assert statuses == [200, 200, 304]
    blob_lines = [line for line in lines.lines if "/v1/blobs/" in line]
    assert [line.rsplit(" ", 1)[-1] for line in blob_lines] == ["200", "200", "304"]
