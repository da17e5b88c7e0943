"""Blob revalidations answered inside the HTTP protocol, before ASGI.

A client that cached a blob and revalidates it (``If-None-Match`` on ``/v1/blobs/{sha256}``) is the
commonest request once a model is deployed, and the server is benchmarked on it against nginx
(issue 3: at least 0.5x its requests/s). Through ASGI each such request costs uvicorn a scope dict,
a request/response cycle object, an ``asyncio.Task`` and two ``send`` calls before any of our code
runs; that per-request cost held one process to ~0.43x nginx. The answer itself needs nothing
ASGI gives: the ETag *is* the blob's hash (blobs are content-addressed and never change), so
"is it this blob and do we have it" decides a 304 from the request line and headers alone.

So :func:`revalidating_protocol` returns uvicorn's httptools protocol with one hook: when the
headers of a request are complete and it is a ``GET``/``HEAD`` of ``/v1/blobs/<sha256>`` (no query),
without ``Origin`` (cross-origin requests keep going through Starlette's CORS middleware), whose
``If-None-Match`` names a blob the store has, and no earlier pipelined request is still being
answered, the 304 is written straight to the transport, with the same headers the ASGI path sends
(:func:`.blobs.not_modified_headers`) plus uvicorn's defaults (``date``). Everything else —
including every other outcome for blobs (200, 206, 404, a non-matching tag) — goes to the app
unchanged (:mod:`.downloads` then answers plain full downloads of verified blobs). Keep-alive,
``Connection: close``, HTTP/1.0 and pipelining follow uvicorn's own rules, because the hook ends
by calling the protocol's own end-of-response bookkeeping.

The 304's bytes are not rebuilt per request: a blob's headers never change (encoded once per blob)
and uvicorn's default headers (``date``) are re-encoded only when uvicorn replaces them, once a
second. That saves more per 304 than the connection limits (:mod:`.protocol`) add to this path
(``benchmarks/bench_protocol.py --baseline-src``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..registry.blobs import is_sha256
from .blobs import BlobApp, matches, not_modified_headers

PREFIX = b"/v1/blobs/"
_STATUS_304 = b"HTTP/1.1 304 Not Modified\r\n"


class NoEvent:
    def set(self) -> None:
        """Nothing waits on a request answered in the protocol."""


class _Answered:
    """Stands in for uvicorn's request/response cycle of a request answered in the protocol
    (``message_event``: uvicorn's ``connection_lost`` sets it)."""

    response_complete = True
    disconnected = False
    message_event = NoEvent()


_ANSWERED = _Answered()


def revalidating_protocol(blobs: BlobApp, count: Callable[[], None] | None = None,
                          base: type[HttpToolsProtocol] = HttpToolsProtocol) -> type:
    """Given the server's blob app (and a counter to bump per answer), return an httptools
    protocol class for uvicorn's ``http=`` that answers blob revalidations itself; ``base`` is the
    protocol it extends (the server's :func:`.protocol.guarded_protocol`: the revalidation check
    runs first, so a 304 pays for one Python call at "headers complete", not two)."""

    head_start = head_starter(_STATUS_304)

    class RevalidatingProtocol(base):  # type: ignore[misc, valid-type]
        def on_headers_complete(self) -> None:
            if not self._answer_revalidation():
                super().on_headers_complete()

        def _answer_revalidation(self) -> bool:
            if not is_blob_url(self.url):
                return False
            if self.cycle is not None and not self.cycle.response_complete:
                return False  # an earlier pipelined request is still being answered
            if self.parser.get_method() not in (b"GET", b"HEAD") or self.parser.should_upgrade():
                return False
            tag = None
            for name, value in self.headers:
                if name == b"origin":
                    return False
                if name == b"if-none-match":
                    tag = value
            if tag is None:
                return False
            name = self.url[len(PREFIX):]
            sha256 = name.decode("latin-1")
            if not is_sha256(sha256):
                return False
            # The exact strong tag this server sends is what caches send back: skip the parse.
            if tag != b'"' + name + b'"' and not matches(tag.decode("latin-1"), sha256):
                return False
            if not blobs.known(sha256):
                return False
            keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            head = head_start(self.server_state) + _not_modified_tail(sha256)
            if not keep_alive:
                head = head[:-2] + b"connection: close\r\n\r\n"
            return answered(self, keep_alive, count, head)

    return RevalidatingProtocol


def is_blob_url(url: bytes) -> bool:
    """Cheap first test of a request target: ``/v1/blobs/`` and 64 characters, no query (the
    caller still checks that they are a sha256)."""
    return url.startswith(PREFIX) and len(url) == len(PREFIX) + 64


def answered(protocol: HttpToolsProtocol, keep_alive: bool, count: Callable[[], None] | None,
             *chunks: bytes) -> bool:
    """Write a whole response (``chunks``) on ``protocol``'s transport and end it with uvicorn's
    own end-of-response bookkeeping (keep-alive timer, next pipelined request), closing the
    connection first unless ``keep_alive``; return True (the request was answered)."""
    transport = protocol.transport
    for chunk in chunks:
        transport.write(chunk)
    if count is not None:
        count()
    protocol.cycle = _ANSWERED  # the parser's on_body / on_message_complete then do nothing
    if not keep_alive:
        transport.close()
    protocol.on_response_complete()
    return True


def head_starter(status_line: bytes) -> Callable[[object], bytes]:
    """Given a status line, return a function of uvicorn's server state that returns it followed
    by uvicorn's default headers (``date``), as uvicorn writes them; re-encoded only when uvicorn
    replaces its list (once a second), not per request."""
    default_headers: list[tuple[bytes, bytes]] | None = None
    status_and_defaults = b""

    def head_start(server_state: object) -> bytes:
        nonlocal default_headers, status_and_defaults
        current = server_state.default_headers  # type: ignore[attr-defined]
        if current is not default_headers:
            status_and_defaults = status_line + b"".join(
                name + b": " + value + b"\r\n" for name, value in current)
            default_headers = current
        return status_and_defaults

    return head_start


@lru_cache(maxsize=4096)
def _not_modified_tail(sha256: str) -> bytes:
    """A blob's 304 headers (:func:`.blobs.not_modified_headers`) and the blank line, encoded
    once per blob: blobs never change, so neither does this."""
    return b"".join(name + b": " + value + b"\r\n" for name, value in not_modified_headers(sha256)) \
        + b"\r\n"
