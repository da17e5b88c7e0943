"""Every variant run in the runtime that will serve it, before anyone is offered it.

``convert`` writes files that a browser engine must then load: TF.js layers for ``tfjs`` variants,
LiteRT.js for ``tflite`` ones. Keras with the same weights is not evidence that they will load or
compute the same thing (a layer config TF.js reads differently gives silently wrong answers), so
each variant is loaded in real TF.js / LiteRT.js in headless Chromium (the verify page) and its
outputs compared with Keras' on the same inputs. A variant that fails to load, or whose float32
outputs differ beyond ``verify_tolerance``, is "not offered" with the reason; every variant gets a
:class:`~browserml.variants.RuntimeCheck` that ``publish`` requires.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .browser import launch_browser, open_page, serve_local_files, vendor_mounts
from .errors import BrowserError
from .progress import progress_bar
from .settings import get_settings
from .variants import RuntimeCheck, Variant

STATIC = Path(__file__).parent / "static"
VENDOR_PACKAGES = ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "@litertjs/core",
                   "@litertjs/wasm-utils")
RUNTIMES = {"tfjs": "TF.js {backend} in Chromium", "litert": "LiteRT.js {backend} in Chromium"}
PAGE_BATCH = 16


@contextlib.contextmanager
def verify_page(build_dir: Path) -> Iterator:
    """Yield the verify page (real TF.js and LiteRT.js in headless Chromium) serving
    ``build_dir`` under ``/model/``; closed on exit."""
    mounts = {"/static/": STATIC, "/model/": Path(build_dir), "/sdk/": get_settings().sdk_dir,
              **vendor_mounts(VENDOR_PACKAGES)}
    with serve_local_files(mounts) as origin, launch_browser() as context:
        yield open_page(context, f"{origin}/static/verify.html",
                        "window.browsermlReady === true && window.browsermlLitertReady "
                        "&& window.browsermlLayersReady")


def encode_batches(inputs: np.ndarray, batch: int) -> tuple[str, list[str]]:
    """Return the page dtype and base64 chunks of ``batch`` samples: uint8 pixels when the inputs
    are pixels, float32 values otherwise."""
    dtype = "uint8" if inputs.dtype == np.uint8 else "float32"
    data = inputs if dtype == "uint8" else inputs.astype(np.float32)
    return dtype, [base64.b64encode(np.ascontiguousarray(data[i:i + batch]).tobytes()).decode()
                   for i in range(0, len(data), batch)]


def browser_outputs(page, variant: Variant, inputs: np.ndarray, backend: str = "wasm"
                    ) -> tuple[np.ndarray, str]:
    """Run ``variant`` in its engine on the page; return ``(outputs, backend used)``. Raises
    BrowserError with the engine's first line when it cannot load or run the variant."""
    dtype, batches = encode_batches(inputs, PAGE_BATCH)
    args = {"variant": variant.name, "shape": list(inputs.shape[1:]), "batches": batches,
            "dtype": dtype}
    script = "window.browsermlVerifyLitert" if variant.engine == "litert" else "window.browsermlVerify"
    if variant.engine != "litert":
        args["backend"] = backend
    try:
        result = page.evaluate(f"(args) => {script}(args)", args)
    except Exception as exc:  # Playwright wraps page errors in its own Error type
        engine = "LiteRT.js" if variant.engine == "litert" else "TF.js"
        raise BrowserError(f"{engine} could not run {variant.name}: "
                           f"{str(exc).splitlines()[0][:300]}") from exc
    outputs = result["outputs"]
    flat = (np.concatenate([np.asarray(o, dtype=np.float32) for o in outputs])
            if variant.engine != "litert" else np.asarray(outputs, dtype=np.float32))
    return flat.reshape(len(inputs), -1), result["backend"]


def scaled_difference(got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Return the max absolute difference and that difference relative to the larger of 1 and
    the outputs' magnitude (logits can be large; probabilities are at most 1)."""
    if got.shape != expected.shape or not np.isfinite(got).all():
        return float("inf"), float("inf")
    diff = float(np.abs(got - expected).max())
    return diff, diff / max(1.0, float(np.abs(expected).max()))


def check_variant(page, variant: Variant, inputs: np.ndarray, expected: np.ndarray,
                  targets: np.ndarray | None, tolerance: float) -> None:
    """Run one variant, record its :class:`RuntimeCheck`, and take the figures (agreement,
    accuracy) from what the runtime computed. A failure marks it not offered, with the reason."""
    try:
        got, backend = browser_outputs(page, variant, inputs)
    except BrowserError as exc:
        variant.check = RuntimeCheck(runtime=RUNTIMES[variant.engine].format(backend="wasm"),
                                     samples=len(inputs), passed=False, error=str(exc))
        variant.offered, variant.note = False, str(exc)
        return
    diff, scaled = scaled_difference(got, expected)
    agreement = (float((got.argmax(1) == expected.argmax(1)).mean())
                 if got.shape == expected.shape else 0.0)
    full = variant.weight_dtype == "float32"
    passed = scaled <= tolerance if full else bool(np.isfinite(got).all())
    variant.check = RuntimeCheck(runtime=RUNTIMES[variant.engine].format(backend=backend),
                                 samples=len(inputs), max_abs_diff=diff, agreement=agreement,
                                 passed=passed)
    variant.agreement = agreement
    if targets is not None and got.shape == expected.shape:
        variant.accuracy = float((got.argmax(1) == targets).mean())
    if not passed:
        variant.offered = False
        variant.note = (f"differs from Keras by {diff:.2e} in {variant.check.runtime} "
                        f"(tolerance {tolerance:g})")


def check_variants(build_dir: Path, variants: list[Variant], inputs: np.ndarray,
                   expected: np.ndarray, targets: np.ndarray | None, tolerance: float) -> None:
    """Load every variant in its own runtime in one headless Chromium and check it (see
    :func:`check_variant`)."""
    if not variants:
        return
    with verify_page(build_dir) as page, progress_bar() as bar:
        task = bar.add_task("check in browser", total=len(variants), status="")
        for variant in variants:
            bar.update(task, status=variant.name)
            check_variant(page, variant, inputs, expected, targets, tolerance)
            bar.advance(task)
