"""``GET /v1/blobs/{sha256}``: content-addressed, hence immutable, files.

Because a blob's name is its hash, its bytes can never change: browsers and CDNs may keep it a year
(``immutable`` stops even revalidation on reload), the strong ETag is the hash itself, and a 304 can
be answered from the request alone. Starlette's :class:`FileResponse` does the byte work (Range ->
206/416, HEAD, streaming); this module decides which file (identity or a precompressed ``.br`` /
``.gz`` copy the blob store kept because it is smaller) and answers revalidations before touching
the disk.

It is a raw ASGI app routed as ``/v1/blobs/{sha256}``, not an endpoint taking a ``Request`` object:
this is the hottest path of the server, and the benchmark against nginx measures it. Each blob's
``stat`` is cached after the first request (safe: the file cannot change), so a 304 costs no I/O.

The disk is not trusted blindly (issue 17): a blob's bytes are hashed when first read into memory
(a bad file answers ``503`` and is logged, never served), a file deleted under the server answers
``404`` (its cached stat is forgotten, so a restored file is served again without a restart), and a
deleted ``.br``/``.gz`` copy is recreated from the blob.

Once a file has been read and verified here, later plain full downloads of it (no Origin, Range or
conditional) are answered before ASGI by :mod:`.downloads`, which sends the file with ``sendfile``
as long as it is still the file that was verified (:meth:`BlobApp.download` says which file and
head): the first download of each file always comes through this app.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import anyio
import brotli
from starlette.datastructures import Headers
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import NotFoundError
from ..registry.blobs import BlobStore, is_sha256

CACHE_CONTROL = "public, max-age=31536000, immutable"
# Everything a blob response carries besides its ETag/encoding: immutable caching, embeddable by
# cross-origin-isolated pages anywhere (CORP cross-origin), and the isolation headers themselves
# (set here because the fast path bypasses the middleware that adds them to other responses).
BLOB_HEADERS = {
    "cache-control": CACHE_CONTROL,
    "cross-origin-resource-policy": "cross-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
    "x-content-type-options": "nosniff",
    "vary": "Accept-Encoding",
}
_ENCODING_PREFERENCE = ("br", "gzip")
log = logging.getLogger("browserml.server")


class BlobUnavailable(Exception):
    """A blob file is missing or its bytes do not hash to its name: answer 404/503, never it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BlobFile:
    """One stored representation of a blob: where it is, its stat, its content coding."""

    path: Path
    stat: os.stat_result
    encoding: str | None


class BlobFileResponse(FileResponse):
    """FileResponse with 1 MiB reads: a 4 MB shard in 4 thread hops instead of 64."""

    chunk_size = 1 << 20


class BlobApp:
    """ASGI app: given ``/{sha256}``, answer the blob with immutable caching headers."""

    def __init__(self, store: BlobStore, cache_size: int = 4096, memory_bytes: int = 0) -> None:
        self.store = store
        self._representations = lru_cache(maxsize=cache_size)(self._find)
        self._memory = MemoryCache(memory_bytes)

    def _find(self, sha256: str) -> tuple[BlobFile, ...]:
        """Return the identity file first, then precompressed copies; raise when absent."""
        found = []
        candidates = [(None, self.store.path(sha256))]
        candidates += [(enc, self.store.path(sha256, enc)) for enc in _ENCODING_PREFERENCE]
        for encoding, path in candidates:
            try:
                found.append(BlobFile(path, path.stat(), encoding))
            except FileNotFoundError:
                if encoding is None:
                    raise NotFoundError(f"no blob {sha256}") from None
        return tuple(found)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.serve(scope, receive, send, scope["path_params"]["sha256"])

    async def serve(self, scope: Scope, receive: Receive, send: Send, sha256: str) -> None:
        """Answer one request for ``sha256``. A revalidation of a known blob (the commonest
        request once clients have cached it) is sent as two raw ASGI messages, with no Response
        object and no I/O."""
        if scope["method"] in ("GET", "HEAD") and is_sha256(sha256):
            if_none_match = _header(scope, b"if-none-match")
            if if_none_match and matches(if_none_match, sha256) and self.known(sha256):
                await send(
                    {"type": "http.response.start", "status": 304, "headers": not_modified_headers(sha256)}
                )
                await send({"type": "http.response.body", "body": b""})
                return
        response = self.respond(scope, sha256)
        if isinstance(response, BlobFileResponse):
            try:
                response = await self._checked(scope, sha256, response)
            except BlobUnavailable as exc:
                response = JSONResponse({"error": str(exc)}, exc.status)
        await response(scope, receive, send)

    async def _checked(self, scope: Scope, sha256: str, response: BlobFileResponse) -> Response:
        """Given the file response chosen for a request, return it (or its bytes from memory)
        once the file is known to exist, and to hash to ``sha256`` when read into memory; raise
        BlobUnavailable otherwise. A missing compressed copy is recreated and the request
        answered from the blob itself."""
        encoding = response.headers.get("content-encoding")
        whole = scope["method"] == "GET" and _header(scope, b"range") is None
        try:
            if whole:
                return await self._memory.response(response, sha256, encoding)
            await anyio.to_thread.run_sync(os.stat, response.path)
            return response
        except FileNotFoundError:
            self._representations.cache_clear()
            if encoding is None:
                raise BlobUnavailable(404, f"no blob {sha256}") from None
            log.warning("blob %s: its %s copy is missing; recreating it", sha256, encoding)
            await anyio.to_thread.run_sync(self.store.recompress, sha256)
            return self.respond({**scope, "headers": [h for h in scope["headers"]
                                                      if h[0] != b"accept-encoding"]}, sha256)

    def known(self, sha256: str) -> bool:
        """Return True when the store has ``sha256`` (cached after the first look)."""
        try:
            self._representations(sha256)
        except NotFoundError:
            return False
        return True

    def respond(self, scope: Scope, sha256: str) -> Response:
        """Given the request scope, return the file (whole, ranged or compressed), a 304, or a
        JSON 404/405."""
        if scope["method"] not in ("GET", "HEAD"):
            return JSONResponse({"error": "method not allowed"}, 405, {"Allow": "GET, HEAD"})
        if not is_sha256(sha256):
            return JSONResponse({"error": "not found: blobs are named by their sha256"}, 404)
        try:
            files = self._representations(sha256)
        except NotFoundError as exc:
            return JSONResponse({"error": str(exc)}, 404)
        headers = Headers(scope=scope)
        if matches(headers.get("if-none-match"), sha256):
            return Response(status_code=304, headers={**BLOB_HEADERS, "etag": f'"{sha256}"'})
        return _file_response(_choose(files, headers), sha256)

    def download(self, sha256: str, accept_encoding: str | None) -> Download | None:
        """Given a blob and the request's Accept-Encoding, return what a plain full ``GET``
        (no Range, no conditional, no Origin) answers — the chosen file and the response head
        :meth:`respond` gives it — when that file was read and verified (by this app's memory
        cache) and has not changed on disk since; None otherwise (the ASGI path answers it)."""
        try:
            files = self._representations(sha256)
        except NotFoundError:
            return None
        chosen = _choose(files, {"accept-encoding": accept_encoding} if accept_encoding else {})
        try:  # the file as it is now, not as first looked up: a deleted blob is a 404 (ASGI)
            identity = file_identity(os.stat(chosen.path))
        except FileNotFoundError:
            return None
        if self._memory.verified.get(chosen.path) != identity:
            return None
        return Download(str(chosen.path), _download_head(chosen, sha256), identity,
                        self._memory.get(chosen.path))


@dataclass(frozen=True)
class Download:
    """A full blob response that may be answered in the protocol: the path, the headers the
    ASGI path would send for it (encoded, after uvicorn's defaults), the file's
    :func:`file_identity` when it was verified, and its bytes if still in memory."""

    path: str
    head: bytes
    identity: tuple[int, int, int, int]
    body: bytes | None = None  # the verified bytes, when the memory cache still holds them


def file_identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What tells a changed file from the one that was verified: device, inode, size, mtime."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _file_response(chosen: BlobFile, sha256: str) -> BlobFileResponse:
    """The 200 (or, for a Range request, 206) of one representation of a blob."""
    extra = {"etag": f'"{sha256}"' if chosen.encoding is None else f'"{sha256}-{chosen.encoding}"'}
    if chosen.encoding is not None:
        extra["content-encoding"] = chosen.encoding
    return BlobFileResponse(
        chosen.path,
        stat_result=chosen.stat,
        headers={**BLOB_HEADERS, **extra},
        media_type="application/octet-stream",
    )


@lru_cache(maxsize=4096)
def _download_head(chosen: BlobFile, sha256: str) -> bytes:
    """The headers of a full response of ``chosen``, exactly as the ASGI path sends them (the
    memory cache's Response copies the file response's headers), encoded once per file."""
    return b"".join(name + b": " + value + b"\r\n" for name, value in
                    Response(b"", headers=dict(_file_response(chosen, sha256).headers)).raw_headers)


class MemoryCache:
    """A byte-budgeted LRU of whole blob files, for full GETs.

    Blobs never change, so a copy in memory never goes stale; serving it is one ASGI message
    instead of a file open and a thread hop per MiB, which is what keeps full downloads near
    nginx's ``sendfile`` speed. Files larger than a quarter of the budget are not cached."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._items: OrderedDict[Path, bytes] = OrderedDict()
        self._total = 0
        # Every file whose bytes hashed to its name, with its identity when it did (kept after
        # the bytes are evicted: the protocol sends such files from disk, see .downloads).
        self.verified: dict[Path, tuple[int, int, int, int]] = {}

    async def response(self, file: BlobFileResponse, sha256: str, encoding: str | None) -> Response:
        """Given a file response for ``sha256`` (content-coded ``encoding`` or identity), return
        the same response with the body from memory (or the file response itself when the file
        is too large to cache). Bytes read from disk are checked against ``sha256`` first:
        raise BlobUnavailable (503) when they do not match, FileNotFoundError when gone."""
        size = file.stat_result.st_size
        if size > self.budget // 4:
            await anyio.to_thread.run_sync(os.stat, file.path)  # gone: FileNotFoundError, not a 500
            return file
        body = self._items.get(file.path)
        if body is None:
            path = Path(file.path)
            body, identity = await anyio.to_thread.run_sync(_read_verified, path, sha256, encoding)
            self._add(path, body)
            if identity is not None:
                self.verified[path] = identity
        else:
            os.stat(file.path)  # deleted since it was read: FileNotFoundError (a 404), not its bytes
            self._items.move_to_end(file.path)
        return Response(body, headers=dict(file.headers))

    def get(self, path: Path) -> bytes | None:
        """Return the cached bytes of ``path`` (verified when read), or None."""
        body = self._items.get(path)
        if body is not None:
            self._items.move_to_end(path)
        return body

    def _add(self, path: Path, body: bytes) -> None:
        if path in self._items:
            return
        self._items[path] = body
        self._total += len(body)
        while self._total > self.budget:
            _, evicted = self._items.popitem(last=False)
            self._total -= len(evicted)


def _read_verified(path: Path, sha256: str, encoding: str | None
                   ) -> tuple[bytes, tuple[int, int, int, int] | None]:
    """Read a blob file; raise BlobUnavailable (503) unless its content hashes to ``sha256``.
    Return its bytes and its :func:`file_identity` (None when the file changed while read)."""
    with path.open("rb") as file:
        before = file_identity(os.fstat(file.fileno()))
        body = file.read()
        identity = before if file_identity(os.fstat(file.fileno())) == before else None
    content = body
    try:
        if encoding == "br":
            content = brotli.decompress(body)
        elif encoding == "gzip":
            content = gzip.decompress(body)
    except (brotli.error, OSError, EOFError):
        content = b""
    if hashlib.sha256(content).hexdigest() != sha256:
        log.error("blob %s (%s) does not match its hash: corrupted on disk; republish it", path,
                  encoding or "identity")
        raise BlobUnavailable(503, f"blob {sha256} failed its integrity check on the server")
    return body, identity


class BlobFastPathMiddleware:
    """Send ``/v1/blobs/...`` requests without an ``Origin`` header straight to the blob app,
    skipping the routing and middleware layers that cut revalidation throughput to a fifth of
    nginx's. Requests with ``Origin`` take the normal path, so CORS stays in one place
    (Starlette's CORSMiddleware); blob responses carry their isolation headers themselves."""

    prefix = "/v1/blobs/"

    def __init__(self, app: ASGIApp, blobs: BlobApp, count: Callable[[], None] | None = None) -> None:
        self.app, self.blobs, self.count = app, blobs, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(self.prefix) and _header(scope, b"origin") is None:
            if self.count is not None:
                self.count()
            await self.blobs.serve(scope, receive, send, path[len(self.prefix) :])
            return
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    """Given a scope and a lowercase header name, return its first value (latin-1) or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


@lru_cache(maxsize=4096)
def not_modified_headers(sha256: str) -> list[tuple[bytes, bytes]]:
    """The headers of a blob's 304: what RFC 9110 asks for (ETag, Cache-Control, Vary). The
    client keeps the other headers from the 200 it cached, and each header sent costs the server
    time on the path measured against nginx."""
    headers = {"etag": f'"{sha256}"', "cache-control": CACHE_CONTROL, "vary": "Accept-Encoding"}
    return [(k.encode(), v.encode()) for k, v in headers.items()]


def matches(if_none_match: str | None, sha256: str) -> bool:
    """Given an If-None-Match value, return True when it names any representation of the blob
    (all carry the same content, so any of them is still valid)."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip().removeprefix("W/").strip('"')
        if tag == "*" or tag.split("-", 1)[0] == sha256:
            return True
    return False


def _accepted(accept_encoding: str) -> set[str]:
    """Given an Accept-Encoding value, return the codings it accepts (q=0 means refused)."""
    accepted = set()
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        quality = params.strip().removeprefix("q=").strip() if params else "1"
        try:
            if float(quality) > 0:
                accepted.add(coding.strip().lower())
        except ValueError:
            continue
    return accepted


def _choose(files: tuple[BlobFile, ...], headers: Mapping[str, str]) -> BlobFile:
    """Pick the smallest representation the client accepts; identity for Range requests,
    because ranges address the identity bytes that the manifest's sizes describe."""
    identity = files[0]
    accept = headers.get("accept-encoding")
    if not accept or len(files) == 1 or "range" in headers:
        return identity
    accepted = _accepted(accept)
    usable = [f for f in files[1:] if f.encoding in accepted or "*" in accepted]
    return min(usable, key=lambda f: f.stat.st_size, default=identity)


def routes(blobs: BlobApp) -> list[Route]:
    """Return the blob route for the app's router (requests with ``Origin`` come this way)."""
    return [Route("/v1/blobs/{sha256}", blobs, name="blob")]
