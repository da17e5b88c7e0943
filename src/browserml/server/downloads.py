"""Full blob downloads answered inside the HTTP protocol, before ASGI.

Through ASGI a full ``GET /v1/blobs/{sha256}`` costs uvicorn a scope, a cycle, a task and two
``send`` calls, and Starlette a Response, before the bytes (from the memory cache of
:mod:`.blobs`) reach the transport. Like the 304s of :mod:`.revalidation`, the plain case is
answered at "headers complete" instead, in one of two ways:

* **Bytes in the memory cache** (the usual case: verification reads a file into it): the head
  and the cached bytes go to the transport, which libuv writes as the client reads (no copy in
  Python), and the response ends at once, as a 304 does. Over loopback this is also what the
  client receives cheapest (see below).
* **A verified file whose bytes the cache dropped** (evicted): ``os.sendfile`` from the file,
  directly on the socket. uvicorn cannot send a file (no ASGI zero-copy extension; uvloop's
  ``loop.sendfile`` raises ``NotImplementedError``), so this is hand-written. It costs the server
  a quarter of the CPU of copying (0.2-0.4 ms vs 0.8-1.3 ms per 4 MiB, like nginx), but over
  loopback the *client* pays more to receive pages handed over by reference (``wrk``: 1.35-1.77
  ms vs 1.1 ms per 4 MiB), so with both on one idle machine copying was faster; hence memory first
  (BENCHMARKS.md, issue 17 follow-up 2).

It answers only the plain case: ``GET`` of ``/v1/blobs/<sha256>`` (no query) without ``Origin``
(CORS stays in Starlette's middleware), ``Range``, ``If-None-Match``, ``If-Range``, ``Expect``
or a request body, over plain HTTP, with nothing of an earlier response still queued, for a file
the ASGI path has already read and verified against its hash and that has not changed on disk
since (same device, inode, size and mtime: :meth:`.blobs.BlobApp.download`). Everything else —
the first download of each file, HEAD, ranges, revalidations, 404s, compressed copies not yet
verified, cross-origin requests — goes to the app unchanged. The head is the one the ASGI path
sends (same headers, same order, content coding chosen by the same rule; uvicorn's ``date``
first), so a client cannot tell the two apart.

For sendfile: ``os.write`` of the head, then ``os.sendfile`` from the file, directly on the
connection's socket (non-blocking), only when nothing of an earlier response is still queued in
the transport. When the socket is full, a ``dup`` of its descriptor is
watched for writability (uvloop refuses a writer on the transport's own descriptor) and sending
resumes there. While a body is in flight the request's cycle is a :class:`_FileSender` whose
``response_complete`` is False, so uvicorn queues pipelined requests behind it exactly as it
does behind an ASGI response; when the last byte is in the socket, the hook closes the
connection if the request asked for it (HTTP/1.0, ``Connection: close``, server shutdown) and
calls uvicorn's own end-of-response bookkeeping (keep-alive timer, next pipelined request). A
client that goes away mid-body makes ``sendfile`` fail (or the transport report the loss): the
file and the duplicate descriptor are closed and the connection with them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..registry.blobs import is_sha256
from .blobs import BlobApp
from .revalidation import PREFIX, NoEvent, answered, head_starter, is_blob_url

_STATUS_200 = b"HTTP/1.1 200 OK\r\n"
# Request headers whose meaning the ASGI path handles (or that announce a body): not ours.
_ASGI_HEADERS = frozenset({b"origin", b"range", b"if-none-match", b"if-range", b"expect",
                           b"content-length", b"transfer-encoding"})
_NOT_OPEN = -1


class _FileSender:
    """One response being sent from a file; stands in for uvicorn's request/response cycle
    (``response_complete``, ``disconnected``, ``keep_alive``, ``more_body``, ``message_event``
    are what uvicorn's protocol reads or sets on it)."""

    disconnected = False
    more_body = True
    message_event = NoEvent()

    def __init__(self, protocol: HttpToolsProtocol, socket_fd: int, file_fd: int, head: bytes,
                 size: int, keep_alive: bool) -> None:
        self.protocol = protocol
        self.socket_fd = socket_fd
        self.file_fd = file_fd
        self.head = head
        self.size = size
        self.keep_alive = keep_alive
        self.offset = 0
        self.watch = _NOT_OPEN  # a dup of socket_fd, watched for writability while the socket is full
        self.response_complete = False

    def send(self) -> None:
        """Write what the socket takes now; finish, wait for writability, or give up."""
        if self.response_complete:
            return
        if self.protocol.transport.is_closing():
            self.abort()
            return
        try:
            while self.head:
                self.head = self.head[os.write(self.socket_fd, self.head):]
            while self.offset < self.size:
                sent = os.sendfile(self.socket_fd, self.file_fd, self.offset, self.size - self.offset)
                if sent == 0:  # the file shrank under us: the promised length cannot be kept
                    raise EOFError
                self.offset += sent
        except BlockingIOError:
            if self.watch == _NOT_OPEN:
                self.watch = os.dup(self.socket_fd)
                self.protocol.loop.add_writer(self.watch, self.send)
            return
        except (OSError, EOFError):
            self.abort()
            return
        except BaseException:
            self.abort()  # never leave a writer watching a socket nobody will write to
            raise
        self._finish()

    def _finish(self) -> None:
        self._release()
        protocol = self.protocol
        protocol.browserml_sender = None
        if not self.keep_alive:
            protocol.transport.close()
        protocol.on_response_complete()

    def abort(self) -> None:
        """Stop sending (the client went away, or the file cannot be sent whole) and close the
        connection: a response cut short must not be followed by another on it."""
        if self.response_complete:
            return
        self.disconnected = True
        self._release()
        self.protocol.browserml_sender = None
        self.protocol.transport.close()

    def _release(self) -> None:
        self.response_complete = True
        if self.watch != _NOT_OPEN:
            self.protocol.loop.remove_writer(self.watch)  # before the close: libuv's rule
            os.close(self.watch)
            self.watch = _NOT_OPEN
        os.close(self.file_fd)


def downloading_protocol(blobs: BlobApp, count: Callable[[], None] | None = None,
                         base: type[HttpToolsProtocol] = HttpToolsProtocol) -> type:
    """Given the server's blob app (and a counter to bump per answer), return an httptools
    protocol class (a subclass of ``base``, e.g. :func:`.protocol.guarded_protocol`'s) that sends
    plain full blob downloads itself with ``sendfile``; everything else goes to ``base``."""
    head_start = head_starter(_STATUS_200)

    class DownloadingProtocol(base):  # type: ignore[misc, valid-type]
        browserml_sender: _FileSender | None = None
        browserml_socket = _NOT_OPEN

        def on_headers_complete(self) -> None:
            # uvicorn arms its keep-alive timer when a response completes, expecting the next
            # request in a later read; one answered in the protocol completes inside the read,
            # so a request pipelined behind it must disarm the timer itself.
            self._unset_keepalive_if_required()
            if not self._answer_download():
                super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            sender = self.browserml_sender
            if sender is not None:
                sender.abort()
            super().connection_lost(exc)

        def _refuse(self, response: bytes) -> None:
            # The limits (.protocol) refuse a pipelined head by writing to the transport: never
            # into the middle of a body sent past it.
            sender = self.browserml_sender
            if sender is not None:
                sender.abort()
            super()._refuse(response)

        def _answer_download(self) -> bool:
            if not is_blob_url(self.url):
                return False
            if self.cycle is not None and not self.cycle.response_complete:
                return False  # an earlier pipelined request is still being answered
            if self.parser.get_method() != b"GET" or self.parser.should_upgrade():
                return False
            transport = self.transport
            if self.scheme != "http" or transport.is_closing() or transport.get_write_buffer_size():
                return False  # TLS, a closing connection, or an earlier response still queued
            accept = None
            for name, value in self.headers:
                if name in _ASGI_HEADERS:
                    return False
                if name == b"accept-encoding" and accept is None:  # the first, as Starlette reads it
                    accept = value.decode("latin-1")
            sha256 = self.url[len(PREFIX):].decode("latin-1")
            if not is_sha256(sha256):
                return False
            download = blobs.download(sha256, accept)
            if download is None:
                return False
            keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            head = head_start(self.server_state) + download.head
            head += b"\r\n" if keep_alive else b"connection: close\r\n\r\n"
            if download.body is not None:
                if self.flow.write_paused:
                    return False  # the client is not reading: the app waits for it
                # libuv writes the verified bytes as the client reads: no copy in Python
                return answered(self, keep_alive, count, head, download.body)
            try:
                file_fd = os.open(download.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False  # gone: the app answers 404 and forgets the file
            stat = os.fstat(file_fd)
            if (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns) != download.identity:
                os.close(file_fd)
                return False  # changed since it was verified: the app reads it again
            if self.browserml_socket == _NOT_OPEN:
                self.browserml_socket = self.transport.get_extra_info("socket").fileno()
            if count is not None:
                count()
            sender = _FileSender(self, self.browserml_socket, file_fd, head, stat.st_size, keep_alive)
            self.cycle = sender  # pipelined requests queue behind it; uvicorn's callbacks skip it
            self.browserml_sender = sender
            sender.send()
            return True

    return DownloadingProtocol
