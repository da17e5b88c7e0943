"""Run the app under uvicorn: one worker, uvloop and httptools (the fast C event loop and HTTP
parser — roughly twice the requests/s of the pure-Python defaults on the blob path), and the access
log off by default because at thousands of requests/s it costs more than it tells."""

from __future__ import annotations

import uvicorn

from ..settings import Settings
from .app import create_app
from .auth import token_path


def serve(
    settings: Settings, host: str | None = None, port: int | None = None, access_log: bool = False
) -> None:
    """Given settings (and optional host/port overrides), serve until interrupted."""
    app = create_app(settings)
    print(f"admin token: {token_path(settings.data_dir)} (mode 0600)", flush=True)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_level="info",
    )
