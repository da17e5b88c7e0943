"""Run the app under uvicorn: one worker, uvloop and httptools (the fast C event loop and HTTP
parser in place of the pure-Python defaults), and the access log, proxy-header parsing and the
Server header off by default: at tens of thousands of revalidations a second each costs a
measurable share (see BENCHMARKS.md). Blob revalidations (:mod:`.revalidation`) and plain full
blob downloads (:mod:`.downloads`, sent with sendfile) are answered inside the HTTP protocol,
before ASGI."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

import uvicorn

from ..settings import Settings
from .app import create_app
from .auth import token_path
from .downloads import downloading_protocol
from .protocol import Limits, check_file_limit, guarded_protocol
from .revalidation import revalidating_protocol


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    access_log: bool = False,
    proxy_headers: bool = False,
) -> None:
    """Given settings (and optional overrides), serve until interrupted.

    ``proxy_headers`` trusts X-Forwarded-* from 127.0.0.1; leave it off unless a reverse proxy on
    this host fronts the server (it adds a middleware layer to every request)."""
    check_file_limit(settings.max_connections)
    app = create_app(settings)
    where = f"{token_path(settings.data_dir)} (mode 0600)"
    if settings.admin_token:
        where = "BROWSERML_ADMIN_TOKEN"
    print(f"admin token: {where}", flush=True)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        loop="uvloop",
        http=http_protocol(app, settings, access_log),
        timeout_keep_alive=int(max(1, settings.keepalive_timeout_s)),
        access_log=access_log,
        proxy_headers=proxy_headers,
        server_header=False,
        log_level="info",
    )


def http_protocol(app: object, settings: Settings, access_log: bool = False) -> type:
    """Given the app and settings, return uvicorn's ``http=``: httptools with the connection
    limits of :mod:`.protocol`, and, when the app has the blob fast path, blob revalidations
    (:mod:`.revalidation`) and plain full blob downloads (:mod:`.downloads`, sendfile) answered
    in the protocol. With ``access_log`` every request goes through ASGI, where uvicorn logs it
    (the answers made in the protocol write no log line)."""
    limits = Limits(settings.max_header_bytes, settings.header_timeout_s, settings.max_connections)
    front = getattr(app, "front", None)
    if front is None or access_log:
        return guarded_protocol(limits)
    below = guarded_protocol(limits)
    if hasattr(os, "sendfile"):  # not on Windows
        below = downloading_protocol(front.blobs, front.count, below)
    return revalidating_protocol(front.blobs, front.count, below)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class BackgroundServer:
    """Our app under uvicorn in a daemon thread of this process, on 127.0.0.1.

    For tests, benchmarks and ``browserml bench``: a real server with real sockets, stopped
    cleanly by :meth:`stop`."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for it; raise if it does not stop."""
        self.server.should_exit = True
        self.thread.join(timeout=15)
        if self.thread.is_alive():
            raise RuntimeError("server did not stop within 15 s")

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.thread.is_alive():
            self.stop()


def start_in_thread(settings: Settings, timeout_s: float = 15,
                    access_log: bool = False) -> BackgroundServer:
    """Given settings, start ``create_app(settings)`` on a free loopback port (uvloop +
    httptools, as :func:`serve` does, with or without its access log) and return once it
    accepts connections."""
    port = free_port()
    check_file_limit(settings.max_connections)
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop",
                            http=http_protocol(app, settings, access_log), log_level="warning",
                            lifespan="on", access_log=access_log, server_header=False,
                            timeout_keep_alive=int(max(1, settings.keepalive_timeout_s)))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server failed to start")
        time.sleep(0.02)
    return BackgroundServer(f"http://127.0.0.1:{port}", server, thread)
