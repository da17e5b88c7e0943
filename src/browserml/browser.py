"""The one place that starts headless Chromium.

Verify, bench and the tests all drive Debian's ``/usr/bin/chromium`` through Playwright with the
same flags (no sandbox as root, no background networking: this machine has no internet and
Chromium otherwise floods refused connections). Never ``playwright install``: we use the system
browser so CI and users get the same binary.
"""

from __future__ import annotations

import contextlib
import contextvars
import mimetypes
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import BrowserError
from .settings import get_settings

CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


# What `browser_options` set for every launch inside it: (executable or None, extra flags).
_OVERRIDES: contextvars.ContextVar[tuple[Path | None, tuple[str, ...]]] = contextvars.ContextVar(
    "browserml_browser_overrides", default=(None, ()))


@contextlib.contextmanager
def browser_options(executable: Path | None = None, flags: Sequence[str] = ()) -> Iterator[None]:
    """Within the block, every :func:`launch_browser` uses this Chromium executable (when given)
    and adds these flags (after the defaults, so a repeated switch overrides): how ``browserml
    bench --browser/--browser-flag/--gpu`` reaches every browser a run starts."""
    if executable is not None and not Path(executable).exists():
        raise BrowserError(f"{executable} not found: pass the path of a Chromium executable to --browser")
    token = _OVERRIDES.set((Path(executable) if executable else None, tuple(flags)))
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


def launch_flags(extra_flags: Sequence[str] = ()) -> list[str]:
    """The flags :func:`launch_browser` passes: defaults, then browser_options', then the call's."""
    return [*CHROMIUM_FLAGS, *_OVERRIDES.get()[1], *extra_flags]


def chromium_path() -> Path:
    """Return the Chromium executable from settings, or raise BrowserError saying how to get it."""
    path = get_settings().chromium
    if not path.exists():
        raise BrowserError(
            f"{path} not found: install Debian's chromium (apt-get install -y chromium) "
            "or set BROWSERML_CHROMIUM"
        )
    return path


@contextlib.contextmanager
def launch_browser(extra_flags: Sequence[str] = ()) -> Iterator:
    """Yield a persistent Playwright browser *context* in a fresh profile, closed on exit.

    A persistent context (a real user-data dir) is what gives pages the Cache API and IndexedDB
    across reloads, exactly as a returning visitor has them.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    executable = _OVERRIDES.get()[0] or chromium_path()
    with (
        tempfile.TemporaryDirectory(prefix="browserml-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        try:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(executable),
                headless=True,
                args=launch_flags(extra_flags),
            )
        except PlaywrightError as exc:
            raise BrowserError(f"Chromium failed to start: {exc.message.splitlines()[0]}") from exc
        context.set_default_timeout(get_settings().browser_timeout_s * 1000)
        try:
            yield context
        finally:
            context.close()


def open_page(context, url: str, ready: str):
    """Given a browser context, a page URL and a JS expression that turns true once the page's
    scripts have run, return the loaded page.

    Our harness pages mark a script that fails to load (a 404, an import that does not resolve)
    in ``window.browsermlLoadFailed`` from its ``onerror``; that raises BrowserError naming it at
    once, instead of waiting out the browser timeout for a page that will never be ready.
    """
    page = context.new_page()
    page.goto(url)
    page.wait_for_function(f"({ready}) || Boolean(window.browsermlLoadFailed)")
    failed = page.evaluate("window.browsermlLoadFailed || null")
    if failed:
        page.close()
        raise BrowserError(f"{failed} failed to load on {url} (a missing file or an import "
                           "that does not resolve)")
    return page


# A loopback origin is a secure context, so COOP/COEP make a served page crossOriginIsolated
# (wasm threads).
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def resolve_mount(path: str, mounts: Mapping[str, Path]) -> Path | None:
    """Given a request path and ``{url prefix: folder}``, return the file it names, or None.

    ``..`` never escapes a mount; the longest matching prefix wins.
    """
    for prefix in sorted(mounts, key=len, reverse=True):
        if path.startswith(prefix):
            root = mounts[prefix].resolve()
            target = (root / path[len(prefix):]).resolve()
            if target.is_file() and target.is_relative_to(root):
                return target
            return None
    return None


@contextlib.contextmanager
def serve_local_files(mounts: Mapping[str, Path]) -> Iterator[str]:
    """Serve ``{url prefix: folder}`` on a free 127.0.0.1 port, with cross-origin isolation
    headers, until the block ends; yield the origin (``http://127.0.0.1:<port>``).

    Used by verify and bench to run real TF.js / LiteRT.js on a build's files without the registry.
    A real loopback server (the standard library's threading HTTP server, streaming from disk)
    rather than Playwright request routing: routing hands each body to Chromium in one DevTools
    message, and one 103 MB ``.tflite`` (the reference CNN in float32) closed the whole browser.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_LocalFileHandler, mounts=dict(mounts)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="local-files", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _LocalFileHandler(BaseHTTPRequestHandler):
    """GET/HEAD of files under the mounts; 404 for anything else. Keep-alive (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"

    def __init__(self, *args, mounts: dict[str, Path], **kwargs) -> None:
        self.mounts = mounts
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self._send(body=True)

    def do_HEAD(self) -> None:
        self._send(body=False)

    def _send(self, body: bool) -> None:
        target = resolve_mount(unquote(urlsplit(self.path).path), self.mounts)
        if target is None:
            self.send_response(404)
            self._headers("text/plain", 9)
            if body:
                self.wfile.write(b"not found")
            return
        kind = "application/wasm" if target.suffix == ".wasm" else (
            mimetypes.guess_type(target.name)[0] or "application/octet-stream")
        self.send_response(200)
        self._headers(kind, target.stat().st_size)
        if body:
            with target.open("rb") as handle:
                shutil.copyfileobj(handle, self.wfile, 1 << 20)

    def _headers(self, content_type: str, length: int) -> None:
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        """Quiet: a page load is dozens of requests."""


def vendor_mounts(packages: Sequence[str]) -> dict[str, Path]:
    """Return ``/vendor/<package>/`` mounts onto node_modules for the given npm packages."""
    node_modules = get_settings().node_modules
    return {f"/vendor/{package}/": node_modules / package for package in packages}
