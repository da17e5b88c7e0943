"""Bearer-token auth for the admin endpoints.

One random token per data dir, created on first start in ``<data_dir>/admin-token`` with mode 0600,
read by whoever may administer the registry — or one given in ``BROWSERML_ADMIN_TOKEN``, which
every instance of a deployment shares (issue 20). Compared with :func:`hmac.compare_digest` so response
timing does not leak how much of a guess was right, and every failure answers the same bare 401 so
nothing leaks either.

The token file is written atomically (temp file, fsync, then ``link`` into place, which fails if
another server got there first), so a crash or a full disk during the first start can leave no
empty or half-written token behind. An existing file that is empty, blank or not one line of
printable characters (:data:`TOKEN`) stops the server with :class:`TokenError` rather than
comparing against it: an empty token would otherwise let ``Authorization: Bearer`` with nothing
after it administer the registry. A presented token that is empty is never authorized either.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import TokenError
from ..settings import Settings

TOKEN_FILE = "admin-token"
# What a token file may hold: 16 to 512 printable ASCII characters, no spaces (ours are 43).
TOKEN = re.compile(r"[\x21-\x7e]{16,512}")

Endpoint = Callable[[Request], Awaitable[Response]]


def token_path(data_dir: Path) -> Path:
    """Given a data dir, return where its admin token lives."""
    return Path(data_dir) / TOKEN_FILE


def ensure_admin_token(data_dir: Path) -> str:
    """Given a data dir, return its admin token, creating it (mode 0600, atomically) when absent.

    Raises TokenError when the file exists but holds no usable token."""
    path = token_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _write_token(path, secrets.token_urlsafe(32))
    return read_admin_token(path)


def read_admin_token(path: Path) -> str:
    """Given a token file, return its token; raise TokenError when it is empty or malformed."""
    try:
        token = path.read_text(encoding="ascii").strip()
    except (UnicodeDecodeError, OSError) as exc:
        raise TokenError(f"cannot read the admin token {path}: {exc}; fix or delete it") from None
    if TOKEN.fullmatch(token) is None:
        raise TokenError(
            f"admin token file {path} is empty or malformed; delete it to have a new one "
            "created, or write one line of 16+ printable characters"
        )
    return token


def _write_token(path: Path, token: str) -> None:
    """Write ``token`` to ``path`` whole or not at all; a concurrent first writer wins."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".admin-token-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return  # another server wrote it first: use theirs
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        os.unlink(tmp)


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
    given = given.strip()
    if scheme.lower() != "bearer" or not given or not token:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def admin(endpoint: Endpoint) -> Endpoint:
    """Decorate an endpoint so it runs only for requests with the admin token (else 401)."""

    @wraps(endpoint)
    async def guarded(request: Request) -> Response:
        if not is_authorized(request, request.app.state.admin_token):
            return unauthorized()
        return await endpoint(request)

    return guarded
