"""What the numbers were measured on: CPU, cores, library versions, browser features."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from ..settings import get_settings

INTERESTING_FLAGS = ("avx", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "fma", "sse4_2", "neon")


def cpu_info() -> dict:
    """Return the CPU model, the SIMD flags that matter for inference, and the core count."""
    model, flags = platform.processor() or "unknown", []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = [f for f in value.split() if f in INTERESTING_FLAGS]
    return {"model": model, "flags": flags, "cores": os.cpu_count()}


def npm_version(package: str) -> str | None:
    """Return the installed version of an npm package, or None."""
    path = get_settings().node_modules / package / "package.json"
    return json.loads(path.read_text())["version"] if path.exists() else None


def chromium_version() -> str:
    """Return Chromium's own version string."""
    try:
        out = subprocess.run([str(get_settings().chromium), "--version"], capture_output=True,
                             text=True, timeout=30, check=False)
        return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "unknown"
    except OSError:
        return "unknown"


def environment(native: bool = True) -> dict:
    """Return the machine and software versions every report carries (without the native
    runtimes' when ``native`` is False: ``--no-native`` runs where TensorFlow is not installed)."""
    versions = {"tensorflow": None, "keras": None, "ai_edge_litert": None}
    if native:
        import ai_edge_litert
        import keras
        import tensorflow as tf

        versions = {"tensorflow": tf.__version__, "keras": keras.__version__,
                    "ai_edge_litert": getattr(ai_edge_litert, "__version__", "unknown")}
    return {
        "cpu": cpu_info(),
        "python": platform.python_version(),
        **versions,
        "chromium": chromium_version(),
        "tfjs": npm_version("@tensorflow/tfjs"),
        "litertjs": npm_version("@litertjs/core"),
    }
