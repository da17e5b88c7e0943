"""Running the bench on a real GPU: the ``--gpu`` flag preset and the check that a "GPU" figure
really came from one.

Headless Chromium on Linux gives WebGL and WebGPU only SwiftShader (a CPU rasteriser) unless told
otherwise. On Linux with an NVIDIA driver, these flags put WebGL on ANGLE's Vulkan back-end and
WebGPU on Dawn's Vulkan back-end, both on the NVIDIA device (verified with Chromium 156 on an
H200: WebGL renderer ``ANGLE (NVIDIA, Vulkan 1.4.312 (NVIDIA NVIDIA H200 ...))``, WebGPU adapter
vendor ``nvidia``, ``isFallbackAdapter`` false). README.md's "Benchmarking on a GPU" says what
each flag and the Vulkan/EGL environment variables do.
"""

from __future__ import annotations

import json
import re

# The Vulkan preset: ANGLE and Dawn on the GPU's Vulkan driver, no window surface (headless), the
# GPU used even where Chromium's blocklist would refuse it, and WebGPU exposed on Linux.
GPU_FLAGS = (
    "--use-angle=vulkan",
    "--enable-features=Vulkan,VulkanFromANGLE,DefaultANGLEVulkan",
    "--disable-vulkan-surface",
    "--enable-unsafe-webgpu",
    "--ignore-gpu-blocklist",
    "--enable-gpu",
    "--disable-dev-shm-usage",
)

SOFTWARE = re.compile(r"swiftshader|llvmpipe|softpipe|lavapipe|\bwarp\b|basic render|software", re.I)


def adapter_facts(browser: dict) -> dict:
    """Given the bench page's environment facts, return the WebGL renderer, the WebGPU adapter's
    fields and whether each is a software GPU."""
    webgl = browser.get("webgl")
    raw = browser.get("webgpu")
    try:
        adapter = json.loads(raw) if isinstance(raw, str) else (raw or None)
    except ValueError:
        adapter = {"description": str(raw)}
    fallback = bool(adapter and (adapter.get("isFallbackAdapter") or browser.get("webgpuFallback")))
    fields = ("vendor", "architecture", "description")
    named = " ".join(str(adapter.get(k, "")) for k in fields) if adapter else ""
    return {
        "webgl_renderer": webgl,
        "webgl_software": bool(webgl and SOFTWARE.search(webgl)),
        "webgpu_adapter": adapter,
        "webgpu_software": bool(adapter) and (fallback or bool(SOFTWARE.search(named))),
    }


def software_gpu_warnings(browser: dict, backends_run: set[str]) -> list[str]:
    """One loud line for each GPU backend that was measured but ran on a software GPU."""
    facts = adapter_facts(browser)
    out = []
    if "webgl" in backends_run and facts["webgl_software"]:
        out.append("WARNING: the webgl figures are NOT from a GPU: the renderer is "
                   f"{facts['webgl_renderer']!r} (a CPU rasteriser). On Linux + NVIDIA run with "
                   "--gpu (see README: Benchmarking on a GPU).")
    if "webgpu" in backends_run and facts["webgpu_software"]:
        out.append("WARNING: the webgpu figures are NOT from a GPU: the adapter is "
                   f"{facts['webgpu_adapter']} (fallback / software adapter). On Linux + NVIDIA "
                   "run with --gpu.")
    return out
