"""Static pages and vendored runtimes: ``/sdk/``, ``/vendor/``, ``/demo``, ``/dashboard``.

The browser must get TF.js, its backends, LiteRT.js and Chart.js from *our* origin (never a CDN):
the pages are cross-origin isolated (COOP/COEP, see :mod:`.headers`), work offline, and the
versions are exactly those in ``package-lock.json``. ``/vendor/`` answers exactly the runtime files
listed in :mod:`browserml.vendor` (the list the wheel ships) and 404s everything else — no npm
build leftover (HTML pages with inline scripts, ``.map``, ``.d.ts``) reaches the dashboard's origin.
Files come from ``settings.node_modules`` (the checkout's, or the installed package's bundled
copy). Starlette's StaticFiles does the file work (ETag/Last-Modified revalidation, 404s).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from .. import vendor
from ..settings import Settings

# Module scripts and wasm must carry the right types: browsers refuse others under nosniff, and
# WebAssembly.instantiateStreaming needs application/wasm.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("application/wasm", ".wasm")


class VendorFiles(StaticFiles):
    """StaticFiles over a node_modules-shaped root that serves only the listed runtime paths
    (:func:`vendor.is_runtime`): anything else under ``/vendor/`` is a 404, even an existing file."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not vendor.is_runtime(path.replace("\\", "/")):
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


def routes(settings: Settings) -> list[BaseRoute]:
    """Return the page routes: SDK modules, vendored runtimes, demo and dashboard pages.

    ``/demo`` and ``/dashboard`` redirect to their trailing-slash form (Starlette's router does
    this), so the pages' relative module imports resolve inside their folders."""
    web = Path(settings.web_dir)
    return [
        Mount("/sdk", app=StaticFiles(directory=settings.sdk_dir, check_dir=False)),
        Mount("/vendor", app=VendorFiles(directory=settings.node_modules, check_dir=False)),
        Mount("/demo", app=StaticFiles(directory=web / "demo", html=True, check_dir=False)),
        Mount("/dashboard", app=StaticFiles(directory=web / "dashboard", html=True, check_dir=False)),
    ]
