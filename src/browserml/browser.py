"""The one place that starts headless Chromium.

Verify, bench and the tests all drive Debian's ``/usr/bin/chromium`` through Playwright with the
same flags (no sandbox as root, no background networking: this machine has no internet and
Chromium otherwise floods refused connections). Never ``playwright install``: we use the system
browser so CI and users get the same binary.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
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
