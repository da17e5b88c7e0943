"""Model endpoints: the public manifest (what the SDK reads) and the admin calls that change it.

The manifest is the only mutable thing clients fetch, so it is cached briefly (``manifest_max_age``,
30 s by default: a promotion reaches every client within a minute) and carries a strong ETag over its
exact bytes, so revalidation is a cheap 304. Blob URLs are relative (``/v1/blobs/<sha256>``), which
keeps the manifest valid behind any CDN that mirrors the same paths.

Every storage decision lives in :class:`browserml.registry.Registry`; these handlers only parse
requests, call it, and shape responses. Registry calls are blocking (SQLite / psycopg), so they run
in Starlette's thread pool, keeping the event loop free for blob traffic.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import InvalidValueError
from ..registry import Registry, check_name
from ..registry.gc import hold
from ..registry.registry import DEFAULT_CHANNEL, check_relative_path
from .auth import admin

_UPLOAD_CHUNK = 1 << 20


def _registry(request: Request) -> Registry:
    return request.app.state.registry


def with_urls(manifest: dict[str, Any]) -> dict[str, Any]:
    """Given a registry manifest, add each file's blob URL (relative, so CDNs can mirror it)."""
    for variant in manifest["variants"]:
        for entry in variant["files"]:
            entry["url"] = f"/v1/blobs/{entry['sha256']}"
    return manifest


async def manifest(request: Request) -> Response:
    """``GET /v1/models/{name}/manifest?channel=&client=``: the manifest for this client."""
    name = request.path_params["name"]
    channel = request.query_params.get("channel", DEFAULT_CHANNEL)
    client = request.query_params.get("client")
    body = await run_in_threadpool(_registry(request).manifest, name, channel, client)
    return _cached_json(request, encode_json(with_urls(body)))


def with_document_urls(document: dict[str, Any]) -> dict[str, Any]:
    """Given a channel document, add blob URLs to its manifest and to its rollout's."""
    with_urls(document)
    if "rollout" in document:
        with_urls(document["rollout"]["manifest"])
    return document


def encode_json(body: dict[str, Any]) -> bytes:
    """The exact bytes of a manifest or channel document: compact JSON (``browserml export``
    writes the same bytes, so a CDN and a server answer identically)."""
    return json.dumps(body, separators=(",", ":")).encode()


async def channel_document(request: Request) -> Response:
    """``GET /v1/models/{name}/channels/{channel}.json``: the channel document (the manifest for
    clients outside a canary, plus the rollout the SDK applies by its client id hash). The same
    path and bytes ``browserml export`` writes, so the SDK reads one URL from a server or a CDN."""
    name, channel = request.path_params["name"], request.path_params["channel"]
    body = await run_in_threadpool(_registry(request).channel_document, name, channel)
    return _cached_json(request, encode_json(with_document_urls(body)))


def _cached_json(request: Request, payload: bytes) -> Response:
    """Answer ``payload`` with the manifest max-age and a strong ETag over its bytes (304 when
    the client's copy is current)."""
    etag = f'"{hashlib.sha256(payload).hexdigest()[:40]}"'
    headers = {
        "cache-control": f"public, max-age={request.app.state.settings.manifest_max_age}",
        "etag": etag,
        "vary": "Origin",
    }
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(payload, media_type="application/json", headers=headers)


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: every model, its versions and channels (read-only, public)."""
    models = await run_in_threadpool(_registry(request).list)
    return JSONResponse({"models": models}, headers={"cache-control": "no-cache"})


@admin
async def upload(request: Request) -> Response:
    """``POST /v1/models/{name}/versions[?version=N&channel=C]``: publish a multipart build.

    Each part is one file of the build dir; its *field name* is the path inside the build
    (``variants.json``, ``uint8/model.json`` …). Too large a body is refused with 413 before it is
    read; a body without Content-Length with 411, so the limit cannot be dodged."""
    name = check_name(request.path_params["name"])
    too_big = _check_length(request)
    if too_big is not None:
        return too_big
    version = _int_param(request.query_params.get("version"), "version")
    channel = request.query_params.get("channel")
    uploads = Path(request.app.state.settings.data_dir) / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(dir=uploads, prefix=f"{name}-"))
    held = os.open(build_dir, os.O_RDONLY)
    hold(held)  # in use: leftovers of dead uploads are removed at start (registry/gc.py)
    try:
        await _save_parts(request, build_dir)
        published = await run_in_threadpool(_registry(request).publish, build_dir, name, version, channel)
        request.app.state.telemetry.forget_scope()
    finally:
        await run_in_threadpool(shutil.rmtree, build_dir, True)
        os.close(held)
    return JSONResponse({"name": name, "version": published.version}, status_code=201)


def _check_length(request: Request) -> Response | None:
    limit = request.app.state.settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        return JSONResponse({"error": "Content-Length required"}, status_code=411)
    if int(length) > limit:
        return JSONResponse(
            {"error": f"upload of {int(length)} bytes exceeds the {limit} byte limit"},
            status_code=413,
        )
    return None


async def _save_parts(request: Request, build_dir: Path) -> None:
    """Write every uploaded file to ``build_dir`` under its field name, refusing unsafe paths."""
    async with request.form(max_files=10_000, max_fields=10) as form:
        for field, value in form.multi_items():
            if not isinstance(value, UploadFile):
                raise InvalidValueError(f"form field {field!r} is not a file; send the build's files")
            target = build_dir / check_relative_path(field, "upload")
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as handle:
                while chunk := await value.read(_UPLOAD_CHUNK):
                    handle.write(chunk)


@admin
async def promote(request: Request) -> Response:
    """``POST /v1/models/{name}/channels/{channel}`` with ``{"version": N, "percent": P}``."""
    body = await _json_object(request)
    version = _int_param(body.get("version"), "version", required=True)
    percent = _int_param(body.get("percent", 100), "percent", required=True)
    registry = _registry(request)
    name, channel = request.path_params["name"], request.path_params["channel"]
    state = await run_in_threadpool(registry.promote, name, version, channel, percent)
    return JSONResponse(_state(state))


@admin
async def rollback(request: Request) -> Response:
    """``POST /v1/models/{name}/channels/{channel}/rollback``: back to the previous state."""
    name, channel = request.path_params["name"], request.path_params["channel"]
    state = await run_in_threadpool(_registry(request).rollback, name, channel)
    return JSONResponse(_state(state))


@admin
async def delete_version(request: Request) -> Response:
    """``DELETE /v1/models/{name}/versions/{version}``: only versions no channel serves."""
    name = request.path_params["name"]
    version = _int_param(request.path_params["version"], "version", required=True)
    await run_in_threadpool(_registry(request).delete, name, version)
    request.app.state.telemetry.forget_scope()
    return Response(status_code=204)


def _state(state: Any) -> dict[str, Any]:
    return {
        "channel": state.channel,
        "version": state.version,
        "percent": state.percent,
        "base_version": state.base_version,
    }


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise InvalidValueError("request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidValueError("request body must be a JSON object")
    return body


MAX_INT = 2**31 - 1


def _int_param(value: Any, what: str, required: bool = False) -> int | None:
    """Given a query/body value, return it as an int in [0, 2^31) (None when absent and
    optional). Only a JSON integer or a string of ASCII digits is one: ``1.9``, ``true``,
    ``"²"`` or ``2^63`` raise InvalidValueError (400) instead of being rounded or overflowing."""
    if value is None and not required:
        return None
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        number = int(value)
    if number is None or not 0 <= number <= MAX_INT:
        raise InvalidValueError(f"{what} must be an integer from 0 to {MAX_INT}, got {str(value)[:40]!r}")
    return number


def routes() -> list[Route]:
    """Return the model routes for the app's router."""
    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{name}/manifest", manifest, methods=["GET"]),
        Route("/v1/models/{name}/versions", upload, methods=["POST"]),
        Route("/v1/models/{name}/versions/{version}", delete_version, methods=["DELETE"]),
        Route("/v1/models/{name}/channels/{channel}.json", channel_document, methods=["GET"]),
        Route("/v1/models/{name}/channels/{channel}", promote, methods=["POST"]),
        Route("/v1/models/{name}/channels/{channel}/rollback", rollback, methods=["POST"]),
    ]
