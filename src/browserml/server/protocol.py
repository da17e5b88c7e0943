"""Connection limits in the HTTP protocol layer, before any request reaches the app.

uvicorn's httptools protocol has none of these, and each was found to hurt (issue 17):

* **Request head size.** httptools buffers a header value until its end, however long: one GET with
  a 200 MB header held the server for minutes and grew it by 400 MB. Here the bytes of an
  unfinished request head are counted as they arrive; past ``max_header_bytes`` (request line +
  headers) the client gets ``431 Request Header Fields Too Large`` and the connection is closed.
  The raw count is checked after each read, so at most one read (256 KiB in uvloop) is parsed
  beyond the limit; an exact count of the parsed head then decides a head that completed in the
  same read, so a small head followed by a large body is never refused.
* **Slow heads.** A client that opens a connection and sends its head slowly (or never) held a
  file descriptor forever. A head not complete ``header_timeout_s`` after its first byte (or after
  the connection opened) gets ``408`` and is closed; one sweep a second over the open connections
  enforces it, so the per-request cost is a clock read. Idle keep-alive connections are closed by
  uvicorn's own ``timeout_keep_alive``.
* **Connection count.** Past ``max_connections`` open connections a new one is answered ``503`` and
  closed at once, with a log line (at most one every 10 s) naming the setting, instead of the
  process running out of file descriptors and accepting nothing at all. :func:`check_file_limit`
  makes sure the descriptor limit covers the cap at start.
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import BrowserMLError

log = logging.getLogger("browserml.server")

# Descriptors the process needs besides client connections: databases, blobs being sent,
# validator pipes, the listening socket, stdio.
RESERVED_FDS = 64
_LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class Limits:
    """The protocol's limits (from :class:`browserml.settings.Settings`)."""

    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    max_connections: int = 1000


class _NoEvent:
    def set(self) -> None:
        """Nothing waits on a refused request."""


class _Closed:
    """Stands in for the request cycle of a request refused in the protocol (431/408/503), so
    the parser's body callbacks and uvicorn's ``connection_lost`` for it do nothing."""

    response_complete = True
    disconnected = True
    message_event = _NoEvent()


_CLOSED = _Closed()


def _simple_response(status: bytes, message: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(message)).encode() + b"\r\nconnection: close\r\n\r\n" + message)


TOO_LARGE = _simple_response(b"431 Request Header Fields Too Large", b"request head too large\n")
TIMED_OUT = _simple_response(b"408 Request Timeout", b"request head not received in time\n")
BUSY = _simple_response(b"503 Service Unavailable", b"too many connections; retry later\n")


def guarded_protocol(limits: Limits, base: type[HttpToolsProtocol] = HttpToolsProtocol) -> type:
    """Given limits, return an httptools protocol class (a subclass of ``base``) that enforces
    them; pass it to uvicorn's ``http=`` (or build on it, as :mod:`.revalidation` does)."""

    class GuardedProtocol(base):  # type: ignore[misc, valid-type]
        _reading_head = True
        _head_since: float | None = None
        _head_bytes = 0
        _refused = False

        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                _log_cap(self.server_state, limits.max_connections)
                self._refuse(BUSY)
                return
            self._head_since = time.monotonic()
            _ensure_sweeper(self.server_state, self.loop, limits.header_timeout_s)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._reading_head:
                if self._head_since is None:
                    self._head_since = time.monotonic()
                self._head_bytes += len(data)
            super().data_received(data)
            if self._reading_head and self._head_bytes > limits.max_header_bytes:
                self._refuse(TOO_LARGE)

        def on_headers_complete(self) -> None:
            if self._refused:
                return
            self._reading_head = False
            self._head_since = None
            if self._head_bytes > limits.max_header_bytes and self._head_size() > limits.max_header_bytes:
                self._refuse(TOO_LARGE)
                return
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._reading_head = True
            self._head_bytes = 0

        def _head_size(self) -> int:
            """The parsed request line + headers, in bytes (": " and CRLFs included)."""
            return len(self.url) + 16 + sum(len(n) + len(v) + 4 for n, v in self.headers)

        def _refuse(self, response: bytes) -> None:
            """Answer ``response`` and close, whatever the parser is in the middle of."""
            if self._refused:
                return
            self._refused = True
            self._reading_head = False
            self._head_since = None
            self.cycle = _CLOSED  # type: ignore[assignment]
            if not self.transport.is_closing():
                self.transport.write(response)
                self.transport.close()

        def _sweep(self, now: float, timeout_s: float) -> None:
            if self._head_since is not None and now - self._head_since > timeout_s:
                self._refuse(TIMED_OUT)

    return GuardedProtocol


def _ensure_sweeper(server_state: object, loop: object, timeout_s: float) -> None:
    """Start, once per server, the once-a-second sweep that times out slow request heads."""
    if getattr(server_state, "browserml_sweeper", False):
        return
    server_state.browserml_sweeper = True  # type: ignore[attr-defined]

    def sweep() -> None:
        now = time.monotonic()
        for connection in list(server_state.connections):  # type: ignore[attr-defined]
            sweeper = getattr(connection, "_sweep", None)
            if sweeper is not None:
                sweeper(now, timeout_s)
        loop.call_later(min(1.0, timeout_s / 2), sweep)  # type: ignore[attr-defined]

    loop.call_later(min(1.0, timeout_s / 2), sweep)  # type: ignore[attr-defined]


def _log_cap(server_state: object, cap: int) -> None:
    """Log that the connection cap refused a connection, at most once every 10 s."""
    now = time.monotonic()
    if now - getattr(server_state, "browserml_cap_logged", -_LOG_EVERY_S) < _LOG_EVERY_S:
        return
    server_state.browserml_cap_logged = now  # type: ignore[attr-defined]
    log.warning("refusing connections: %d open, the cap is %d (BROWSERML_MAX_CONNECTIONS; raise it "
                "together with ulimit -n)", len(server_state.connections), cap)  # type: ignore[attr-defined]


def check_file_limit(max_connections: int) -> int:
    """Make sure the process may open ``max_connections`` + :data:`RESERVED_FDS` descriptors,
    raising the soft limit up to the hard one if needed; return the soft limit now in force.

    Raises BrowserMLError (one line: what to change) when even the hard limit is too low, because
    a server that runs out of descriptors stops accepting connections altogether."""
    need = max_connections + RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard == resource.RLIM_INFINITY or hard >= need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            soft = need
        else:
            raise BrowserMLError(
                f"the file-descriptor limit is {soft} (hard {hard}) but BROWSERML_MAX_CONNECTIONS="
                f"{max_connections} needs {need}; raise 'ulimit -n' or lower BROWSERML_MAX_CONNECTIONS "
                f"to {max(1, hard - RESERVED_FDS)}"
            )
    return soft
