"""Parity of every variant in real TF.js and LiteRT.js (headless Chromium) against Keras.

The browser loads each variant's files exactly as shipped; Python sends the run's test images and
compares the outputs: float32 (TF.js and TFLite) must be within ``verify_tolerance`` (1e-4) of
Keras, and each variant's top-1 agreement with Keras is reported. When float32 diverges, the first
layer whose output differs is named, so a translation bug points at its layer. A TFLite variant
that LiteRT.js cannot run (an unsupported op) is reported, not fatal: the SDK leaves it to TF.js.

Files reach the page from the build dir and node_modules through a bare loopback file server
(:func:`browserml.browser.serve_local_files`), not through our server: ``tfjs/`` and verification
stay independent of the registry.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .browser import launch_browser, open_page, serve_local_files, vendor_mounts
from .errors import BrowserError, VerificationError
from .progress import progress_bar
from .settings import get_settings
from .train import read_run
from .variants import read_build

STATIC = Path(__file__).parent / "static"
VENDOR_PACKAGES = ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "@litertjs/core",
                   "@litertjs/wasm-utils")


@dataclass
class VariantReport:
    """How one variant did in the browser."""

    name: str
    backend: str
    max_abs_diff: float | None
    agreement: float | None
    accuracy: float | None
    passed: bool
    diverging_layer: str | None = None
    engine: str = "tfjs"
    error: str | None = None


@dataclass
class VerifyReport:
    """All variants' results; ``ok`` is False when any required check failed."""

    samples: int
    variants: list[VariantReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v.passed for v in self.variants)


def encode_batches(images: np.ndarray, batch: int) -> list[str]:
    """Return the images as base64 uint8 chunks of ``batch`` samples (cheap to send to a page)."""
    return [base64.b64encode(np.ascontiguousarray(images[i:i + batch]).tobytes()).decode()
            for i in range(0, len(images), batch)]


def keras_layer_outputs(model, images: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Return each named layer's Keras output for ``images``."""
    import keras

    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outputs = probe.predict(images.astype(np.float32), verbose=0)
    return dict(zip(names, outputs if isinstance(outputs, list) else [outputs], strict=True))


def first_diverging_layer(page, model, variant: str, backend: str, images: np.ndarray,
                          tolerance: float) -> str | None:
    """Return the first layer whose TF.js output differs from Keras by more than ``tolerance``
    (relative to the layer's magnitude), or None."""
    names = [layer.name for layer in model.layers if layer.__class__.__name__ != "InputLayer"]
    result = page.evaluate("(args) => window.browsermlVerify(args)", {
        "variant": variant, "backend": backend, "shape": list(images.shape[1:]),
        "batches": encode_batches(images, len(images)), "layerNames": names})
    expected = keras_layer_outputs(model, images, names)
    for name in names:
        got = np.asarray(result["layers"][name], dtype=np.float32)
        want = expected[name].reshape(-1)
        scale = max(1.0, float(np.abs(want).max()))
        if got.shape != want.shape or np.abs(got - want).max() > tolerance * scale:
            return name
    return None


def verify(build_dir: Path, run_dir: Path | None = None, *, samples: int | None = None,
           backend: str = "wasm", tolerance: float | None = None) -> VerifyReport:
    """Run every TF.js variant of ``build_dir`` in headless Chromium on the run's test images and
    compare with Keras. Raises VerificationError naming the variant (and layer) that fails."""
    settings = get_settings()
    build = read_build(build_dir)
    run = read_run(run_dir or default_run_dir(build_dir, build.name))
    tolerance = settings.verify_tolerance if tolerance is None else tolerance
    count = min(samples or settings.verify_samples, len(run.test_labels))
    images, labels = run.test_images[:count], run.test_labels[:count]
    model = run.load_model()
    expected = model.predict(images.astype(np.float32), batch_size=64, verbose=0)
    report = VerifyReport(samples=count)
    mounts = {"/static/": STATIC, "/model/": Path(build_dir), **vendor_mounts(VENDOR_PACKAGES)}
    with serve_local_files(mounts) as origin, launch_browser() as context, progress_bar() as bar:
        page = open_page(context, f"{origin}/static/verify.html",
                         "window.browsermlReady === true && window.browsermlLitertReady")
        task = bar.add_task("verify", total=len(build.variants), status="")
        for variant in build.variants:
            bar.update(task, status=variant.name)
            if variant.engine == "litert":
                result = check_litert_variant(page, variant.name, images, labels, expected,
                                              tolerance)
            else:
                result = check_variant(page, model, variant.name, backend, images, labels,
                                       expected, tolerance)
            report.variants.append(result)
            bar.advance(task)
    failed = [v for v in report.variants if not v.passed]
    if failed:
        v = failed[0]
        where = f" (first diverging layer: {v.diverging_layer})" if v.diverging_layer else ""
        raise VerificationError(
            f"variant {v.name}: max abs difference {v.max_abs_diff:.2e} from Keras exceeds "
            f"{tolerance:g} on {backend}{where}")
    return report


def check_variant(page, model, name: str, backend: str, images: np.ndarray, labels: np.ndarray,
                  expected: np.ndarray, tolerance: float) -> VariantReport:
    """Run one variant in the page and compare it with Keras' outputs."""
    try:
        result = page.evaluate("(args) => window.browsermlVerify(args)", {
            "variant": name, "backend": backend, "shape": list(images.shape[1:]),
            "batches": encode_batches(images, 25)})
    except Exception as exc:  # Playwright wraps page errors in its own Error type
        raise BrowserError(f"variant {name}: TF.js failed in Chromium: "
                           f"{str(exc).splitlines()[0]}") from exc
    got = np.concatenate([np.asarray(o, dtype=np.float32) for o in result["outputs"]])
    got = got.reshape(expected.shape)
    diff = float(np.abs(got - expected).max())
    agreement = float((got.argmax(1) == expected.argmax(1)).mean())
    accuracy = float((got.argmax(1) == labels).mean())
    # Only full precision promises numerical parity; quantized variants report agreement.
    passed = diff <= tolerance if name == "float32" else True
    layer = None if passed else first_diverging_layer(page, model, name, backend, images[:4],
                                                      tolerance)
    return VariantReport(name, result["backend"], diff, agreement, accuracy, passed, layer)


def check_litert_variant(page, name: str, images: np.ndarray, labels: np.ndarray,
                         expected: np.ndarray, tolerance: float) -> VariantReport:
    """Run one TFLite variant in LiteRT.js and compare it with Keras. A LiteRT.js failure (e.g.
    an op it cannot run) is reported on the variant, not raised: TF.js still serves that model."""
    try:
        result = page.evaluate("(args) => window.browsermlVerifyLitert(args)", {
            "variant": name, "shape": list(images.shape[1:]),
            "batches": encode_batches(images, 25)})
    except Exception as exc:  # Playwright wraps page errors in its own Error type
        return VariantReport(name, "wasm", None, None, None, True, engine="litert",
                             error=str(exc).splitlines()[0])
    got = np.asarray(result["outputs"], dtype=np.float32).reshape(expected.shape)
    diff = float(np.abs(got - expected).max())
    passed = diff <= tolerance if name == "tflite-float32" else True
    return VariantReport(name, result["backend"], diff,
                         float((got.argmax(1) == expected.argmax(1)).mean()),
                         float((got.argmax(1) == labels).mean()), passed, engine="litert")


def default_run_dir(build_dir: Path, name: str) -> Path:
    """Return ``runs/<name>`` beside ``build/<name>``, the layout ``make demo`` uses."""
    return Path(build_dir).resolve().parent.parent / "runs" / name
