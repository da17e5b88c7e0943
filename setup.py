"""Build hook: stage the browser files into the package before setuptools collects it.

Everything else is in pyproject.toml. From a checkout (``node_modules`` present, i.e. after
``npm ci``), ``sdist`` and ``build_py`` copy the SDK, the demo and dashboard pages and exactly the
vendor files listed in ``src/browserml/vendor.py`` into ``src/browserml/_bundled`` (git-ignored),
so the sdist carries them and a wheel built from that sdist (no node there) ships them too.
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "src" / "browserml"


def stage() -> None:
    """Refresh ``_bundled`` from the checkout, or check that an unpacked sdist carries it."""
    if (ROOT / "node_modules").is_dir() and (ROOT / "sdk" / "src").is_dir():
        spec = importlib.util.spec_from_file_location("browserml_vendor", PACKAGE / "vendor.py")
        vendor = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = vendor  # dataclasses look their module up there
        spec.loader.exec_module(vendor)
        vendor.stage_package(ROOT, PACKAGE)
    elif not (PACKAGE / "_bundled" / "sdk").is_dir():
        raise SystemExit("error: no node_modules and no src/browserml/_bundled: run 'npm ci' first")


class StagedBuildPy(build_py):
    def run(self) -> None:
        if not getattr(self, "editable_mode", False):  # an editable install serves the checkout
            stage()
        super().run()


class StagedSdist(sdist):
    def run(self) -> None:
        stage()
        super().run()


setup(cmdclass={"build_py": StagedBuildPy, "sdist": StagedSdist})
