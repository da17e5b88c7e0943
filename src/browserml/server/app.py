"""The BrowserML HTTP server: one Starlette app assembled from one module per surface.

``create_app(settings)`` wires the registry (storage), the admin token, the routes of each surface
(:mod:`.models`, :mod:`.blobs`, :mod:`.pages`; telemetry, stats and metrics from issue 9) and the two
cross-cutting concerns — isolation headers and the CORS allowlist — and maps every
:class:`BrowserMLError` to a JSON error with the right status. Nothing here stores anything itself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ..errors import (
    BrowserMLError,
    FormatError,
    InvalidNameError,
    InvalidValueError,
    NotFoundError,
    RegistryError,
)
from ..registry import Registry
from ..registry.gc import clean_leftovers
from ..settings import Settings, get_settings
from ..telemetry.store import open_store
from . import blobs, models, pages
from . import metrics as metrics_surface
from . import stats as stats_surface
from . import telemetry as telemetry_surface
from .auth import admin_token
from .blobs import BlobFastPathMiddleware
from .headers import IsolationHeadersMiddleware

log = logging.getLogger("browserml.server")

# Most specific first: the first isinstance match decides the status.
STATUS_BY_ERROR: tuple[tuple[type[BrowserMLError], int], ...] = (
    (NotFoundError, 404),
    (InvalidNameError, 400),
    (InvalidValueError, 400),
    (FormatError, 422),
    (RegistryError, 409),
    (BrowserMLError, 400),
)


async def browserml_error(_request: Request, exc: Exception) -> Response:
    """Given an expected failure, return ``{"error": message}`` with its status."""
    status = next(code for kind, code in STATUS_BY_ERROR if isinstance(exc, kind))
    return JSONResponse({"error": str(exc)}, status_code=status)


async def http_error(_request: Request, exc: Exception) -> Response:
    """Given Starlette's HTTPException (unknown route, bad method, bad form), answer JSON."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers or None)


class ServerApp(Starlette):
    """Starlette with the blob fast path in front of everything, Starlette's own error middleware
    included: a blob revalidation is the hottest request and is benchmarked against nginx, so it
    pays for nothing it does not use. Every other request is plain Starlette."""

    front: BlobFastPathMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is not None:
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def starlette(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app behind the fast path: Starlette's middleware stack and routes."""
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> Starlette:
    """Given settings, return the ASGI app serving manifests, blobs, pages and admin calls.

    Opens the registry (raising RegistryError when the database cannot be reached, so ``serve``
    fails before it binds) and creates the admin token on first start; the registry is closed when
    the server shuts down."""
    settings = settings or get_settings()
    registry = Registry(settings)
    token = admin_token(settings)
    removed, freed = clean_leftovers(settings.data_dir)
    if removed:
        log.warning("removed %d leftovers of crashed publishes/uploads (%d bytes)", removed, freed)
    # Telemetry (issue 9): store opened here too, so a bad database fails before binding.
    metrics = metrics_surface.Metrics()
    telemetry = telemetry_surface.TelemetryService(settings, open_store(settings), metrics,
                                                   known=registry.known_versions)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        telemetry.start()
        try:
            yield
        finally:
            await telemetry.stop()
            registry.close()

    blob_app = blobs.BlobApp(registry.blobs, memory_bytes=settings.blob_cache_bytes)
    app = ServerApp(
        routes=[*models.routes(), *blobs.routes(blob_app), *pages.routes(settings),
                *telemetry_surface.routes(), *stats_surface.routes(), *metrics_surface.routes()],
        middleware=[
            Middleware(metrics_surface.MetricsMiddleware, metrics=metrics),
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "HEAD"],
                allow_headers=["If-None-Match", "Range"],
                expose_headers=["ETag", "Content-Length", "Content-Encoding", "Content-Range"],
                max_age=600,
            ),
            Middleware(IsolationHeadersMiddleware),
        ],
        exception_handlers={BrowserMLError: browserml_error, HTTPException: http_error},
        lifespan=lifespan,
    )
    # Blob requests without Origin skip even the request histogram (a plain counter counts them).
    app.front = blobs.BlobFastPathMiddleware(app.starlette, blobs=blob_app,
                                             count=metrics.blob_fast_path.inc)
    app.state.settings = settings
    app.state.registry = registry
    app.state.admin_token = token
    app.state.metrics = metrics
    app.state.telemetry = telemetry
    return app
