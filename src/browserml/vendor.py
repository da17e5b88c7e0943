"""The one list of third-party files BrowserML ships: what the SDK loads, what the demo trains on.

Browsers get TF.js, its backends, LiteRT.js and Chart.js from *our* origin (never a CDN), at exactly
the versions in ``package-lock.json``. This module names those files one by one — not whole
folders, so no npm build leftover (an HTML page with inline scripts, a ``.map``, a ``.d.ts``, a
``tsconfig.tsbuildinfo``) is ever served on the dashboard's origin — and it is the single source
for three users:

- the server's ``/vendor/`` route (:func:`is_runtime` says which paths it answers);
- the wheel build (``setup.py`` calls :func:`stage_package`, which copies these files, the SDK,
  the demo and dashboard pages and the licences into ``browserml/_bundled``);
- a static export (:func:`runtime_files` lists each file with its URL path and source).

Files are looked up under a ``node_modules``-shaped root: the checkout's ``node_modules`` or the
installed package's ``_bundled/node_modules`` (``settings.node_modules`` picks).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

LICENSES_DIR = Path(__file__).resolve().parent / "licenses"
BUNDLED_DIR = "_bundled"


@dataclass(frozen=True)
class VendorPackage:
    """One npm package: the files of it that we ship, and its licence.

    ``runtime`` files are served under ``/vendor/<name>/``; ``data`` files are shipped but never
    served (the digits the demo trains on). ``license_file`` is the package's own licence file;
    packages that ship none (TF.js, LiteRT.js) get the SPDX text from ``browserml/licenses``."""

    name: str
    license: str
    runtime: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    license_file: str | None = None


TFJS_WASM = ("tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm", "tfjs-backend-wasm-threaded-simd.wasm")
# LiteRT.js picks one glue script + wasm by device (compat / relaxed SIMD / threads); the SDK never
# asks for its JSPI build, so that one is not shipped.
LITERT_BUILDS = ("litert_wasm_compat_internal", "litert_wasm_internal", "litert_wasm_threaded_internal")

PACKAGES: tuple[VendorPackage, ...] = (
    VendorPackage("@tensorflow/tfjs", "Apache-2.0", runtime=("dist/tf.min.js",)),
    VendorPackage(
        "@tensorflow/tfjs-backend-wasm", "Apache-2.0",
        runtime=("dist/tf-backend-wasm.min.js", *(f"dist/{w}" for w in TFJS_WASM)),
    ),
    VendorPackage("@tensorflow/tfjs-backend-webgpu", "Apache-2.0",
                  runtime=("dist/tf-backend-webgpu.min.js",)),
    VendorPackage(
        "@litertjs/core", "Apache-2.0",
        runtime=("dist/index.js", *(f"wasm/{b}.{ext}" for b in LITERT_BUILDS for ext in ("js", "wasm"))),
    ),
    VendorPackage("@litertjs/wasm-utils", "Apache-2.0", runtime=("dist/index.js",)),
    VendorPackage("chart.js", "MIT", runtime=("dist/chart.umd.js",), license_file="LICENSE.md"),
    VendorPackage("mnist", "MIT", data=tuple(f"src/digits/{d}.json" for d in range(10)),
                  license_file="LICENSE"),
)


@dataclass(frozen=True)
class VendorFile:
    """One shipped file: its package, its path inside the package and (for runtime files) the
    URL path the server answers it at."""

    package: str
    path: str
    served: bool

    @property
    def relpath(self) -> str:
        """Path under a node_modules-shaped root, e.g. ``@tensorflow/tfjs/dist/tf.min.js``."""
        return f"{self.package}/{self.path}"

    @property
    def url_path(self) -> str:
        """URL path on the server, e.g. ``/vendor/@tensorflow/tfjs/dist/tf.min.js``."""
        return f"/vendor/{self.relpath}"

    def source(self, root: Path) -> Path:
        """Given a node_modules-shaped root, return where this file is."""
        return Path(root) / self.package / self.path


def runtime_files() -> list[VendorFile]:
    """Return every file served under ``/vendor/``, in package order."""
    return [VendorFile(p.name, f, True) for p in PACKAGES for f in p.runtime]


def data_files() -> list[VendorFile]:
    """Return the shipped files that are never served (the demo's training digits)."""
    return [VendorFile(p.name, f, False) for p in PACKAGES for f in p.data]


_RUNTIME_BY_PATH = {f.relpath: f for f in runtime_files()}


def is_runtime(relpath: str) -> bool:
    """Given the path after ``/vendor/``, say whether it is one of the listed runtime files."""
    return relpath in _RUNTIME_BY_PATH


def runtime_file(root: Path, relpath: str) -> Path | None:
    """Given a node_modules-shaped root and the path after ``/vendor/``, return the file to
    serve, or None when the path is not one of the listed runtime files."""
    entry = _RUNTIME_BY_PATH.get(relpath)
    return entry.source(root) if entry is not None else None


def package_version(root: Path, package: str) -> str:
    """Given a node_modules-shaped root, return the installed version of ``package``."""
    return json.loads((Path(root) / package / "package.json").read_text())["version"]


def license_text(root: Path, package: VendorPackage) -> str:
    """Return the licence text shipped with ``package``: its own file, else the SPDX text."""
    if package.license_file:
        return (Path(root) / package.name / package.license_file).read_text()
    return (LICENSES_DIR / f"{package.license}.txt").read_text()


def missing(root: Path) -> list[str]:
    """Given a node_modules-shaped root, return the listed files it lacks (empty when complete)."""
    return [f.relpath for f in (*runtime_files(), *data_files()) if not f.source(root).is_file()]


def stage_vendor(node_modules: Path, dest: Path) -> int:
    """Copy every listed file, each package's ``package.json`` and its licence from
    ``node_modules`` into the node_modules-shaped ``dest`` (replaced); write
    ``THIRD_PARTY_NOTICES.md`` beside it. Return the bytes copied.

    Raises FileNotFoundError naming the first missing file (run ``npm ci``)."""
    gaps = missing(node_modules)
    if gaps:
        raise FileNotFoundError(f"{node_modules}: {gaps[0]} is missing ({len(gaps)} files); run 'npm ci'")
    if dest.exists():
        shutil.rmtree(dest)
    total = 0
    for package in PACKAGES:
        target = dest / package.name
        target.mkdir(parents=True)
        shutil.copy2(node_modules / package.name / "package.json", target / "package.json")
        (target / "LICENSE").write_text(license_text(node_modules, package))
        for rel in (*package.runtime, *package.data):
            out = target / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(node_modules / package.name / rel, out)
            total += out.stat().st_size
    (dest.parent / "THIRD_PARTY_NOTICES.md").write_text(notices(node_modules))
    return total


def notices(root: Path) -> str:
    """Return a Markdown list of the shipped packages: name, version, licence, where its text is."""
    lines = ["# Third-party files shipped with BrowserML", "",
             "Exact npm versions (package-lock.json); each licence text is in "
             "`node_modules/<package>/LICENSE` beside this file.", ""]
    lines += [f"- `{p.name}` {package_version(root, p.name)} — {p.license}" for p in PACKAGES]
    return "\n".join(lines) + "\n"


def _copy_tree(src: Path, dest: Path, skip: Iterable[str] = ()) -> None:
    """Copy a folder of our own source files (no caches, nothing named in ``skip``)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", ".*", *skip))


def stage_package(project_root: Path, package_dir: Path) -> Path:
    """Given a checkout and its ``src/browserml``, fill ``<package_dir>/_bundled`` with what an
    installed wheel serves: ``sdk/`` (the SDK modules), ``web/`` (demo and dashboard pages) and
    ``node_modules/`` (the listed vendor files and licences). Return the bundled folder."""
    bundled = Path(package_dir) / BUNDLED_DIR
    bundled.mkdir(parents=True, exist_ok=True)
    _copy_tree(project_root / "sdk" / "src", bundled / "sdk")
    _copy_tree(project_root / "web", bundled / "web")
    stage_vendor(project_root / "node_modules", bundled / "node_modules")
    return bundled
