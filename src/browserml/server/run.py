"""Run the app under uvicorn: one worker, uvloop and httptools (the fast C event loop and HTTP
parser in place of the pure-Python defaults), and the access log, proxy-header parsing and the
Server header off by default: at tens of thousands of revalidations a second each costs a
measurable share (see BENCHMARKS.md)."""

from __future__ import annotations

import uvicorn

from ..settings import Settings
from .app import create_app
from .auth import token_path


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
    app = create_app(settings)
    print(f"admin token: {token_path(settings.data_dir)} (mode 0600)", flush=True)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        proxy_headers=proxy_headers,
        server_header=False,
        log_level="info",
    )
