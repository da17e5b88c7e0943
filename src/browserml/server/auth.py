"""Bearer-token auth for the admin endpoints.

One random token per data dir, created on first start in ``<data_dir>/admin-token`` with mode 0600
(``O_EXCL`` so two servers starting together cannot both write one), read by whoever may administer
the registry; or one given in ``BROWSERML_ADMIN_TOKEN``, which every instance of a deployment shares.
Compared with :func:`hmac.compare_digest` so response timing does not leak how much
of a guess was right, and every failure answers the same bare 401 so nothing leaks either.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..settings import Settings

TOKEN_FILE = "admin-token"

Endpoint = Callable[[Request], Awaitable[Response]]


def token_path(data_dir: Path) -> Path:
    """Given a data dir, return where its admin token lives."""
    return Path(data_dir) / TOKEN_FILE


def ensure_admin_token(data_dir: Path) -> str:
    """Given a data dir, return its admin token, creating it (mode 0600) when absent."""
    path = token_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def admin_token(settings: Settings) -> str:
    """Given settings, return the admin token: ``BROWSERML_ADMIN_TOKEN`` when set (how several
    instances share one without sharing a disk), else the data dir's token file."""
    return settings.admin_token or ensure_admin_token(settings.data_dir)


def unauthorized() -> JSONResponse:
    """The one answer to a missing, malformed or wrong token: no hint which it was."""
    return JSONResponse({"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def is_authorized(request: Request, token: str) -> bool:
    """Given a request, return True when it carries ``Authorization: Bearer <token>``."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def admin(endpoint: Endpoint) -> Endpoint:
    """Decorate an endpoint so it runs only for requests with the admin token (else 401)."""

    @wraps(endpoint)
    async def guarded(request: Request) -> Response:
        if not is_authorized(request, request.app.state.admin_token):
            return unauthorized()
        return await endpoint(request)

    return guarded
