"""Blob revalidations answered in the HTTP protocol (``server/revalidation.py``), on a real
uvicorn server over real sockets: the 304 is right, nothing else changes, and keep-alive,
pipelining, ``Connection: close`` and HTTP/1.0 behave as they do through ASGI."""

from __future__ import annotations

import socket
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest

from browserml.registry import Registry
from browserml.server.blobs import BlobApp
from conftest import server_settings


@pytest.fixture
def blob_server(tmp_path, make_build, live_server):
    """A server with digits v1 published; returns (server, a weights blob's sha256)."""
    settings = server_settings(tmp_path)
    with Registry(settings) as registry:
        registry.publish(make_build(seed=1), "digits", channel="stable")
    server = live_server(settings)
    manifest = httpx.get(f"{server.url}/v1/models/digits/manifest").json()
    sha = next(f["sha256"] for v in manifest["variants"] for f in v["files"] if f["role"] == "weights")
    return server, sha


def raw_exchange(url: str, payload: bytes, responses: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``payload`` (one or more requests) on one connection; read ``responses`` answers
    (Content-Length bodies; none for 304s and HEADs); return (status, headers, body) each."""
    host, port = url.removeprefix("http://").split(":")
    out = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(payload)
        buffer = b""
        for _ in range(responses):
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                assert chunk, "connection closed early"
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                buffer += sock.recv(65536)
            out.append((int(lines[0].split()[1]), headers, buffer[:length]))
            buffer = buffer[length:]
        sock.settimeout(2)
        try:
            rest = sock.recv(1)
        except TimeoutError:
            rest = None  # still open: keep-alive
        out.append((0, {"closed": str(rest == b"")}, b""))
    return out


def request(path: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def test_a_revalidation_never_reaches_the_app(blob_server, monkeypatch):
    server, sha = blob_server

    async def refuse(*_args, **_kwargs):
        raise AssertionError("the ASGI blob app was called")

    monkeypatch.setattr(BlobApp, "serve", refuse)
    with httpx.Client(base_url=server.url) as client:
        for _ in range(2):  # twice on one keep-alive connection
            response = client.get(f"/v1/blobs/{sha}", headers={"If-None-Match": f'W/"{sha}", "x"'})
            assert response.status_code == 304 and response.content == b""
            assert set(response.headers) == {"date", "etag", "cache-control", "vary"}
            assert response.headers["etag"] == f'"{sha}"'
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        # Anything but a revalidation of a stored blob is the app's (here: made to fail).
        assert client.get(f"/v1/blobs/{sha}").status_code == 500


def test_pipelined_requests_are_answered_in_order(blob_server):
    server, sha = blob_server
    tag = f'If-None-Match: "{sha}"'
    payload = b"".join([
        request(f"/v1/blobs/{sha}", tag),
        request("/v1/models/digits/manifest"),
        request(f"/v1/blobs/{sha}", tag, method="HEAD"),
        request(f"/v1/blobs/{sha}", "Accept-Encoding: identity"),  # a full download...
        request(f"/v1/blobs/{sha}", tag),  # ...then a revalidation queued behind it
    ])
    *answers, (_, end, _) = raw_exchange(server.url, payload, 5)
    assert [status for status, _, _ in answers] == [304, 200, 304, 200, 304]
    assert b'"variants"' in answers[1][2]
    assert len(answers[3][2]) == int(answers[3][1]["content-length"]) > 0
    assert end["closed"] == "False"  # keep-alive throughout


@pytest.mark.parametrize("ask", [("1.1", "Connection: close"), ("1.0", "X-Nothing: 1")],
                         ids=["connection-close", "http-1.0"])
def test_a_304_then_close_when_asked(blob_server, ask):
    server, sha = blob_server
    version, header = ask
    (status, headers, body), (_, end, _) = raw_exchange(
        server.url, request(f"/v1/blobs/{sha}", f'If-None-Match: "{sha}"', header, version=version), 1)
    assert (status, body) == (304, b"")
    assert headers["connection"] == "close" and end["closed"] == "True"


def test_other_blob_requests_still_go_to_the_app(blob_server):
    server, sha = blob_server
    missing = "0" * 64
    with httpx.Client(base_url=server.url) as client:
        unknown = client.get(f"/v1/blobs/{missing}", headers={"If-None-Match": f'"{missing}"'})
        assert unknown.status_code == 404 and "error" in unknown.json()
        assert client.get(f"/v1/blobs/{sha}", headers={"If-None-Match": '"other"'}).status_code == 200
        # Cross-origin revalidations go through the CORS middleware and say so.
        cors = client.get(f"/v1/blobs/{sha}", headers={"If-None-Match": f'"{sha}"',
                                                       "Origin": "https://allowed.example"})
        assert cors.status_code == 304
        assert cors.headers["access-control-allow-origin"] == "https://allowed.example"
        odd = client.get(f"/v1/blobs/{'../' * 21}x", headers={"If-None-Match": "*"})
        assert odd.status_code == 404


def test_a_304s_date_follows_the_clock(blob_server):
    """The 304's head is built from cached bytes: its ``date`` must still be uvicorn's current
    one (refreshed once a second), not the one of the first 304 this server sent."""
    server, sha = blob_server
    with httpx.Client(base_url=server.url) as client:
        dates = []
        for _ in range(2):
            response = client.get(f"/v1/blobs/{sha}", headers={"If-None-Match": f'"{sha}"'})
            assert response.status_code == 304
            dates.append(parsedate_to_datetime(response.headers["date"]))
            time.sleep(1.2)
    assert dates[1] > dates[0]
