"""Static pages and vendored runtimes: ``/sdk/``, ``/vendor/``, ``/demo``, ``/dashboard``.

The browser must get TF.js, its backends, LiteRT.js and Chart.js from *our* origin (never a CDN):
the pages are cross-origin isolated (COOP/COEP, see :mod:`.headers`), work offline, and the
versions are exactly those in ``package-lock.json``. Only an allowlist of packages, and only their
``dist``/``wasm`` folders, is exposed — never all of ``node_modules``. Starlette's StaticFiles does
the file work (ETag/Last-Modified revalidation, path traversal refusal, 404s).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from ..settings import Settings

# Module scripts and wasm must carry the right types: browsers refuse others under nosniff, and
# WebAssembly.instantiateStreaming needs application/wasm.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("application/wasm", ".wasm")

VENDORED = {
    "@tensorflow/tfjs": ("dist",),
    "@tensorflow/tfjs-backend-wasm": ("dist", "wasm-out"),
    "@tensorflow/tfjs-backend-webgpu": ("dist",),
    "@litertjs/core": ("dist", "wasm"),
    "@litertjs/wasm-utils": ("dist",),
    "chart.js": ("dist",),
}


def vendor_mounts(node_modules: Path) -> list[BaseRoute]:
    """Given node_modules, return one static mount per allowlisted package folder, at
    ``/vendor/<package>/<folder>/``."""
    return [
        Mount(
            f"/vendor/{package}/{folder}",
            app=StaticFiles(directory=Path(node_modules) / package / folder, check_dir=False),
        )
        for package, folders in VENDORED.items()
        for folder in folders
    ]


def routes(settings: Settings) -> list[BaseRoute]:
    """Return the page routes: SDK modules, vendored runtimes, demo and dashboard pages.

    ``/demo`` and ``/dashboard`` redirect to their trailing-slash form (Starlette's router does
    this), so the pages' relative module imports resolve inside their folders."""
    web = Path(settings.web_dir)
    return [
        Mount("/sdk", app=StaticFiles(directory=settings.sdk_dir, check_dir=False)),
        *vendor_mounts(settings.node_modules),
        Mount("/demo", app=StaticFiles(directory=web / "demo", html=True, check_dir=False)),
        Mount("/dashboard", app=StaticFiles(directory=web / "dashboard", html=True, check_dir=False)),
    ]
