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
  file descriptor forever. A head still incomplete ``header_timeout_s`` after a sweep first saw it
  (sweeps run every second, or every half timeout if shorter), and a connection that sent nothing
  that long, get ``408`` and are closed. The sweep compares a per-connection count of completed
  heads, so a request costs no clock read and no timer. Idle keep-alive connections are closed by
  uvicorn's own ``timeout_keep_alive``.
* **Connection count.** Past ``max_connections`` open connections a new one is answered ``503`` and
  closed at once, with a log line (at most one every 10 s) naming the setting, instead of the
  process running out of file descriptors and accepting nothing at all. :func:`check_file_limit`
  makes sure the descriptor limit covers the cap at start.
"""

from __future__ import annotations

import logging
import math
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
    them; pass it to uvicorn's ``http=`` (or build on it, as :mod:`.revalidation` does).

    The per-request work is a few attribute updates (no clock read, no timer): blob
    revalidations answered in the protocol run at tens of thousands a second per core."""
    max_head = limits.max_header_bytes
    interval = min(1.0, limits.header_timeout_s / 2)
    stalled_limit = math.ceil(limits.header_timeout_s / interval)
    base_data_received = base.data_received
    base_headers_complete = base.on_headers_complete
    base_message_complete = base.on_message_complete

    class GuardedProtocol(base):  # type: ignore[misc, valid-type]
        _reading_head = True  # between requests or inside a request head (not its body)
        _head_bytes = 0  # bytes received since the last head completed (while reading a head)
        _heads = 0  # requests completed on this connection
        _mark = -1  # _heads at the last sweep that found this connection reading a head
        _stalled = 0  # sweeps in a row that found the same head still incomplete
        _refused = False

        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                _log_cap(self.server_state, limits.max_connections)
                self._refuse(BUSY)
                return
            _ensure_sweeper(self.server_state, self.loop, interval, stalled_limit)

        def data_received(self, data: bytes) -> None:
            if not self._reading_head:
                base_data_received(self, data)
                return
            received = self._head_bytes + len(data)
            self._head_bytes = received
            base_data_received(self, data)
            # A head that completed in this read reset the count: only re-check a large one.
            if received > max_head and self._reading_head and self._head_bytes > max_head:
                self._refuse(TOO_LARGE)

        def on_headers_complete(self) -> None:
            if self._refused:
                return
            self._reading_head = False
            if self._head_bytes > max_head and self._head_size() > max_head:
                self._refuse(TOO_LARGE)
                return
            base_headers_complete(self)

        def on_message_complete(self) -> None:
            # Every request ends here, also one a subclass answered without calling
            # on_headers_complete above (a blob revalidation): the bookkeeping lives here.
            base_message_complete(self)
            self._reading_head = True
            self._head_bytes = 0
            self._heads += 1

        def _head_size(self) -> int:
            """The parsed request line + headers, in bytes (": " and CRLFs included)."""
            return len(self.url) + 16 + sum(len(n) + len(v) + 4 for n, v in self.headers)

        def _refuse(self, response: bytes) -> None:
            """Answer ``response`` and close, whatever the parser is in the middle of."""
            if self._refused:
                return
            self._refused = True
            self._reading_head = False
            self.cycle = _CLOSED  # type: ignore[assignment]
            if not self.transport.is_closing():
                self.transport.write(response)
                self.transport.close()

        def _sweep(self) -> None:
            """Called once per sweep: count how long the current head has been incomplete. An
            idle keep-alive connection (no byte of a new head yet) is uvicorn's to close."""
            if not self._reading_head or (self._heads and not self._head_bytes):
                self._stalled = 0
                return
            if self._mark == self._heads:
                self._stalled += 1
                if self._stalled > stalled_limit:
                    self._refuse(TIMED_OUT)
            else:
                self._mark, self._stalled = self._heads, 1

    return GuardedProtocol


def _ensure_sweeper(server_state: object, loop: object, interval: float, _stalled_limit: int) -> None:
    """Start, once per server, the sweep (every ``interval`` s) that times out slow heads."""
    if getattr(server_state, "browserml_sweeper", False):
        return
    server_state.browserml_sweeper = True  # type: ignore[attr-defined]

    def sweep() -> None:
        for connection in list(server_state.connections):  # type: ignore[attr-defined]
            sweeper = getattr(connection, "_sweep", None)
            if sweeper is not None:
                sweeper()
        loop.call_later(interval, sweep)  # type: ignore[attr-defined]

    loop.call_later(interval, sweep)  # type: ignore[attr-defined]


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
