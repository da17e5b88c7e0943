"""Parity of every variant in real TF.js and LiteRT.js (headless Chromium) against Keras.

The browser loads each variant's files exactly as shipped; Python sends the run's test images and
compares the outputs: float32 (TF.js and TFLite) must be within ``verify_tolerance`` (1e-4) of
Keras, and each variant's top-1 agreement with Keras is reported. When float32 diverges, the first
layer whose output differs is named, so a translation bug points at its layer. A TFLite variant
that LiteRT.js cannot run (an unsupported op) is reported, not fatal: the SDK leaves it to TF.js.

The Keras model and the inputs are found from ``variants.json``'s ``origin`` (the run directory,
or the model file and data ``convert`` was given, or the ``source.keras`` it saved for a live
model), so ``browserml verify build/x`` needs nothing else. Files reach the page through a bare
loopback file server (:func:`browserml.runtime_check.verify_page`), not through our server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BrowserError, ModelError, VerificationError
from .model_source import Source, read_source
from .progress import progress_bar
from .runtime_check import browser_outputs, encode_batches, verify_page
from .settings import get_settings
from .variants import Build, Variant, read_build


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


def keras_layer_outputs(model, inputs: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Return each named layer's Keras output for ``inputs``."""
    import keras

    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outputs = probe.predict(inputs.astype(np.float32), verbose=0)
    return dict(zip(names, outputs if isinstance(outputs, list) else [outputs], strict=True))


def first_diverging_layer(page, model, variant: str, backend: str, inputs: np.ndarray,
                          tolerance: float) -> str | None:
    """Return the first layer whose TF.js output differs from Keras by more than ``tolerance``
    (relative to the layer's magnitude), or None. ``model`` is the TF.js-translated Keras model,
    so its layer names are the ones in ``model.json``."""
    names = [layer.name for layer in model.layers if layer.__class__.__name__ != "InputLayer"]
    dtype, batches = encode_batches(inputs, len(inputs))
    result = page.evaluate("(args) => window.browsermlVerify(args)", {
        "variant": variant, "backend": backend, "shape": list(inputs.shape[1:]),
        "batches": batches, "layerNames": names, "dtype": dtype})
    expected = keras_layer_outputs(model, inputs, names)
    for name in names:
        got = np.asarray(result["layers"][name], dtype=np.float32)
        want = expected[name].reshape(-1)
        scale = max(1.0, float(np.abs(want).max()))
        if got.shape != want.shape or np.abs(got - want).max() > tolerance * scale:
            return name
    return None


def layer_probe(model):
    """Return a copy of ``model`` with its own layers: the translated model shares layer objects
    with the user's model, so a layer's ``.output`` would name the original graph's tensor."""
    import keras

    probe = keras.models.clone_model(model)
    probe.set_weights(model.get_weights())
    return probe


def reference_source(build_dir: Path, build: Build, run_dir: Path | None) -> Source:
    """Return the Keras model and inputs a build was converted from: ``run_dir`` when given, else
    ``variants.json``'s origin, else ``runs/<name>`` beside ``build/<name>``."""
    if run_dir is not None:
        return read_source(run_dir)
    origin = build.origin or {}
    if "run" in origin:
        return read_source(Path(origin["run"]))
    if origin.get("model"):
        path = Path(origin["model"])
        path = path if path.is_absolute() else Path(build_dir) / path
        return read_source(path, data=origin.get("data"), labels=build.labels,
                           value_range=tuple(build.input.value_range), seed=origin.get("seed"))
    fallback = default_run_dir(build_dir, build.name)
    if not fallback.is_dir():
        raise ModelError(f"{build_dir}: variants.json does not say which model it came from and "
                         f"{fallback} does not exist; pass --run, or convert it again")
    return read_source(fallback)


def verify(build_dir: Path, run_dir: Path | None = None, *, samples: int | None = None,
           backend: str = "wasm", tolerance: float | None = None) -> VerifyReport:
    """Run every variant of ``build_dir`` in headless Chromium on the model's reference inputs and
    compare with Keras. Raises VerificationError naming the variant (and layer) that fails."""
    from .tfjs.rewrite import tfjs_model

    settings = get_settings()
    build = read_build(build_dir)
    source = reference_source(Path(build_dir), build, run_dir)
    tolerance = settings.verify_tolerance if tolerance is None else tolerance
    count = min(samples or settings.verify_samples, len(source.inputs))
    inputs = source.inputs[:count]
    labels = None if source.targets is None else source.targets[:count]
    expected = np.asarray(source.model.predict(inputs.astype(np.float32), batch_size=64,
                                               verbose=0), dtype=np.float32)
    report = VerifyReport(samples=count)
    with verify_page(Path(build_dir)) as page, progress_bar() as bar:
        task = bar.add_task("verify", total=len(build.variants), status="")
        for variant in build.variants:
            bar.update(task, status=variant.name)
            result = check_variant(page, variant, backend, inputs, labels, expected, tolerance)
            if not result.passed and variant.engine == "tfjs" and result.error is None:
                result.diverging_layer = first_diverging_layer(
                    page, layer_probe(tfjs_model(source.model)), variant.name, backend,
                    inputs[:4], tolerance)
            report.variants.append(result)
            bar.advance(task)
    failed = [v for v in report.variants if not v.passed]
    if failed:
        v = failed[0]
        where = f" (first diverging layer: {v.diverging_layer})" if v.diverging_layer else ""
        if v.error:
            raise VerificationError(f"variant {v.name}: {v.error}")
        raise VerificationError(
            f"variant {v.name}: max abs difference {v.max_abs_diff:.2e} from Keras exceeds "
            f"{tolerance:g} on {v.backend}{where}")
    return report


def check_variant(page, variant: Variant, backend: str, inputs: np.ndarray,
                  labels: np.ndarray | None, expected: np.ndarray, tolerance: float
                  ) -> VariantReport:
    """Run one variant in its engine on the page and compare it with Keras' outputs. Only full
    precision promises numerical parity; quantized variants report agreement. A variant that
    cannot run fails only when it is offered (the SDK would pick it)."""
    try:
        got, used = browser_outputs(page, variant, inputs, backend)
    except BrowserError as exc:
        if variant.engine == "tfjs" and variant.offered:
            raise
        return VariantReport(variant.name, "wasm", None, None, None, not variant.offered,
                             engine=variant.engine, error=str(exc))
    got = got.reshape(expected.shape)
    diff = float(np.abs(got - expected).max())
    scaled = diff / max(1.0, float(np.abs(expected).max()))
    agreement = float((got.argmax(1) == expected.argmax(1)).mean())
    accuracy = None if labels is None else float((got.argmax(1) == labels).mean())
    passed = scaled <= tolerance if variant.weight_dtype == "float32" else True
    return VariantReport(variant.name, used, diff, agreement, accuracy, passed,
                         engine=variant.engine)


def default_run_dir(build_dir: Path, name: str) -> Path:
    """Return ``runs/<name>`` beside ``build/<name>``, the layout ``make demo`` uses."""
    return Path(build_dir).resolve().parent.parent / "runs" / name
