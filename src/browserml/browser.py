"""The one place that starts headless Chromium.

Verify, bench and the tests all drive Debian's ``/usr/bin/chromium`` through Playwright with the
same flags (no sandbox as root, no background networking: this machine has no internet and
Chromium otherwise floods refused connections). Never ``playwright install``: we use the system
browser so CI and users get the same binary.
"""

from __future__ import annotations

import contextlib
import mimetypes
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

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

    executable = chromium_path()
    with (
        tempfile.TemporaryDirectory(prefix="browserml-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        try:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(executable),
                headless=True,
                args=[*CHROMIUM_FLAGS, *extra_flags],
            )
        except PlaywrightError as exc:
            raise BrowserError(f"Chromium failed to start: {exc.message.splitlines()[0]}") from exc
        context.set_default_timeout(get_settings().browser_timeout_s * 1000)
        try:
            yield context
        finally:
            context.close()


# A loopback origin is a secure context, so COOP/COEP make a routed page crossOriginIsolated
# (wasm threads); its requests never reach the network: Playwright routing answers them all.
LOCAL_ORIGIN = "http://127.0.0.1:9"
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


def route_local_files(context, mounts: Mapping[str, Path], origin: str = LOCAL_ORIGIN) -> str:
    """Serve ``origin`` from local folders with cross-origin isolation headers; return the origin.

    Used by verify and bench to run real TF.js / LiteRT.js on local files without an HTTP server.
    """

    def handle(route) -> None:
        path = route.request.url[len(origin):].split("?", 1)[0]
        target = resolve_mount(path, mounts)
        if target is None:
            route.fulfill(status=404, body="not found", headers=ISOLATION_HEADERS)
            return
        kind = "application/wasm" if target.suffix == ".wasm" else (
            mimetypes.guess_type(target.name)[0] or "application/octet-stream")
        route.fulfill(status=200, body=target.read_bytes(),
                      headers={**ISOLATION_HEADERS, "Content-Type": kind})

    context.route(f"{origin}/**", handle)
    return origin


def vendor_mounts(packages: Sequence[str]) -> dict[str, Path]:
    """Return ``/vendor/<package>/`` mounts onto node_modules for the given npm packages."""
    node_modules = get_settings().node_modules
    return {f"/vendor/{package}/": node_modules / package for package in packages}
