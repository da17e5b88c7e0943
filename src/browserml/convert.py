"""Convert a trained run into a build directory of browser-ready variants.

For each TF.js variant we write the files, read them back through the same decoder TF.js uses
(dequantizing uint8 / float16), load those numbers into the Keras model and measure test accuracy
and top-1 agreement with float32. TFLite variants are run natively with LiteRT. The table
therefore reports what each runtime will really compute, not what we hoped quantization would do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelError
from .progress import progress_bar
from .settings import get_settings
from .tfjs.layers_model import assign_weights, read_layers_weights, write_layers_model
from .tflite import TFLITE_VARIANTS, choose_int8, export_tflite
from .tflite import predict as tflite_predict
from .train import Run, read_run
from .variants import Build, InputSpec, Variant, describe_file, prepare_build_dir, write_build

TFJS_VARIANTS = ("float32", "float16", "uint8")
ALL_VARIANTS = TFJS_VARIANTS + TFLITE_VARIANTS


@dataclass
class Scores:
    """Predicted classes and accuracy of one set of weights on the run's test data."""

    predictions: np.ndarray
    accuracy: float


def score(model, run: Run, batch_size: int = 64) -> Scores:
    """Return the model's top-1 predictions and accuracy on the run's test images."""
    probabilities = model.predict(run.test_images, batch_size=batch_size, verbose=0)
    predictions = probabilities.argmax(axis=1)
    return Scores(predictions, float((predictions == run.test_labels).mean()))


def tfjs_variant(model, run: Run, build_dir: Path, name: str, reference: Scores | None,
                 shard_bytes: int) -> tuple[Variant, Scores]:
    """Write one TF.js variant, then score it with the weights read back from its files."""
    folder = build_dir / name
    files = write_layers_model(model, folder, name, shard_bytes)
    original = [np.array(v.numpy()) for v in model.weights]
    try:
        assign_weights(model, read_layers_weights(folder))
        scores = score(model, run)
    finally:
        for variable, value in zip(model.weights, original, strict=True):
            variable.assign(value)
    agreement = 1.0 if reference is None else float(
        (scores.predictions == reference.predictions).mean())
    entries = [describe_file(build_dir, path, "model" if path.name == "model.json" else "weights")
               for path in files]
    variant = Variant(name=name, engine="tfjs", format="tfjs-layers", weight_dtype=name,
                      files=entries, bytes=sum(e.bytes for e in entries),
                      accuracy=scores.accuracy, agreement=agreement)
    return variant, scores


def tflite_variants(model, run: Run, build_dir: Path, names: list[str], reference: Scores
                    ) -> list[Variant]:
    """Write the TFLite variants and score each natively (LiteRT, 2 threads, batch 1)."""
    if not names:
        return []
    paths = export_tflite(model, build_dir, tuple(names), run.calibration_images())
    variants = []
    for name, path in paths.items():
        note = None
        if name == "tflite-int8":
            note = f"int8 {choose_int8(path.parent, run.test_images, run.test_labels)} scales"
        predictions = tflite_predict(path, run.test_images).argmax(axis=1)
        entry = describe_file(build_dir, path, "model")
        variants.append(Variant(
            name=name, engine="litert", format="tflite", weight_dtype=name.split("-", 1)[1],
            files=[entry], bytes=entry.bytes,
            accuracy=float((predictions == run.test_labels).mean()),
            agreement=float((predictions == reference.predictions).mean()), note=note,
        ))
    return variants


def apply_budget(variants: list[Variant], budget_pp: float) -> None:
    """Mark variants whose accuracy loss against float32 exceeds ``budget_pp`` as not offered."""
    baseline = next(v for v in variants if v.name == "float32").accuracy
    for variant in variants:
        if variant.accuracy is None or baseline is None:
            continue
        loss_pp = (baseline - variant.accuracy) * 100
        if loss_pp > budget_pp + 1e-9:
            variant.offered = False
            variant.note = f"accuracy loss {loss_pp:.2f} pp exceeds the {budget_pp:g} pp budget"


def convert(run_dir: Path, out: Path, *, name: str | None = None,
            variants: tuple[str, ...] = ALL_VARIANTS, budget_pp: float | None = None) -> Build:
    """Given a run directory, write ``out`` with one folder per variant and ``variants.json``;
    return the build description. ``float32`` is always written: it is the reference and the
    last fallback."""
    settings = get_settings()
    run = read_run(run_dir)
    unknown = set(variants) - set(ALL_VARIANTS)
    if unknown:
        raise ModelError(f"unknown variant(s) {', '.join(sorted(unknown))}: "
                         f"choose from {', '.join(ALL_VARIANTS)}")
    ordered = ["float32", *(v for v in TFJS_VARIANTS if v in variants and v != "float32")]
    tflite_names = [v for v in TFLITE_VARIANTS if v in variants]
    model = run.load_model()
    prepare_build_dir(out)
    written: list[Variant] = []
    with progress_bar() as bar:
        task = bar.add_task("convert", total=len(ordered) + bool(tflite_names), status="")
        reference = None
        for variant_name in ordered:
            bar.update(task, status=variant_name)
            variant, scores = tfjs_variant(model, run, out, variant_name, reference,
                                           settings.shard_bytes)
            reference = reference or scores
            written.append(variant)
            bar.advance(task)
        bar.update(task, status="tflite")
        written += tflite_variants(model, run, out, tflite_names, reference)
        bar.advance(task)
    apply_budget(written, settings.accuracy_budget_pp if budget_pp is None else budget_pp)
    size = run.info["input_size"]
    build = Build(
        name=name or Path(out).name, source="browserml-train", architecture=run.info["arch"],
        labels=run.labels, input=InputSpec(height=size, width=size, channels=run.info["channels"]),
        test_samples=len(run.test_labels), keras_accuracy=run.metrics.get("test_accuracy"),
        variants=written,
    )
    write_build(out, build)
    return build


def variant_rows(build: Build) -> list[dict]:
    """Return one row per variant for the table and ``--json``: bytes, ratio to float32,
    accuracy, change in percentage points and agreement."""
    baseline = build.variant("float32")
    rows = []
    for variant in build.variants:
        change = (None if variant.accuracy is None or baseline.accuracy is None
                  else (variant.accuracy - baseline.accuracy) * 100)
        rows.append({
            "name": variant.name, "engine": variant.engine, "bytes": variant.bytes,
            "ratio": variant.bytes / baseline.bytes, "accuracy": variant.accuracy,
            "change_pp": change, "agreement": variant.agreement, "offered": variant.offered,
            "note": variant.note,
        })
    return rows
