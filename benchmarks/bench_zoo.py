"""Bring-your-own-model benchmark (issue 15): every keras.applications image classifier family
through ``browserml.convert``, each variant checked in real TF.js / LiteRT.js in headless Chromium.

For each family (weights=None, seeded, small inputs, 8 classes, logits out so differences are not
hidden by a saturated softmax; BatchNormalization statistics re-estimated on one batch of images,
so activations keep their scale through the depth of an untrained network instead of vanishing to
1e-25, which would make any comparison vacuous) plus the Keras transfer-learning tutorial shape
(augmentation + a nested MobileNetV2 base + pooling/dropout/dense head), the model is converted with
``data="shapes"`` and the table reports, per engine, the float32 max abs difference from Keras as
measured in the browser, whether the variant is offered, and the top-1 agreement of TF.js uint8
and LiteRT int8 with Keras float32. Targets: float32 within 1e-4 (relative to max(1, |logits|))
on at least one engine for 100% of families, on TF.js for >= 90%.

    .venv/bin/python benchmarks/bench_zoo.py [--only MobileNet,ConvNeXtTiny] [--out zoo.md]

Evaluation is kept small for a 2-core machine (BROWSERML_VERIFY_SAMPLES=32 test images,
BROWSERML_CALIBRATION_SAMPLES=64 calibration images unless set).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("BROWSERML_VERIFY_SAMPLES", "32")
os.environ.setdefault("BROWSERML_CALIBRATION_SAMPLES", "64")

from browserml.convert import convert

# keras.applications family -> smallest convenient input size it accepts.
FAMILIES = {
    "MobileNet": 32, "MobileNetV2": 32, "MobileNetV3Small": 32, "MobileNetV3Large": 32,
    "EfficientNetB0": 32, "EfficientNetV2B0": 32, "ResNet50": 32, "ResNet50V2": 32,
    "DenseNet121": 32, "InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71,
    "NASNetMobile": 32, "VGG16": 32, "ConvNeXtTiny": 32,
}
TUTORIAL = "tutorial (augmentation + nested MobileNetV2 + head)"
CLASSES = 8  # the shapes dataset's classes
VARIANTS = ("float32", "uint8", "tflite-float32", "tflite-int8")


def calibrate_batchnorm(model, size: int) -> None:
    """Set every BatchNormalization's moving statistics to those of one seeded batch of shapes
    images flowing
    through the network (one training-mode pass with momentum 0), so an untrained model's
    activations stay O(1) at every depth. Each variance is floored at its layer's median: at
    small inputs deep layers are 1x1, some channels are near-constant over the batch, and dividing
    by their ~0 variance would amplify float rounding 30x per layer (EfficientNet: Keras at
    batch 1 vs batch 8 then differed by 7e-4 relative)."""
    import keras
    import numpy as np

    norms = [layer for layer in iter_layers(model)
             if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    from browserml.datasets import shapes

    # the images it is then measured on (shapes), so activations are calibrated for them
    images = shapes.generate(32, input_size=size, seed=7, channels=3).images.astype("float32")
    model(images, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
        variance = np.asarray(layer.moving_variance)
        layer.moving_variance.assign(np.maximum(variance, np.median(variance)))


def iter_layers(model):
    """Yield every layer, walking into nested models."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from iter_layers(layer)


def family_model(name: str, size: int):
    """Return the seeded keras.applications model ``name`` at ``size`` px with logits out."""
    import keras

    keras.utils.set_random_seed(0)
    kwargs = {"input_shape": (size, size, 3), "weights": None, "classes": CLASSES,
              "classifier_activation": None}
    if name.startswith(("MobileNetV3", "EfficientNetV2")):
        kwargs["include_preprocessing"] = True
    model = getattr(keras.applications, name)(**kwargs)
    calibrate_batchnorm(model, size)
    return model


def tutorial_model(size: int = 32):
    """The Keras transfer-learning tutorial's shape: augmentation, a frozen MobileNetV2 base
    nested in a functional model called with training=False, pooling, dropout, dense head."""
    import keras

    keras.utils.set_random_seed(0)
    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal"),
                                     keras.layers.RandomRotation(0.2)], name="augmentation")
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False,
                                          weights=None)
    calibrate_batchnorm(base, size)
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = augmentation(inputs)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(x), name="tutorial")


def engine_cells(build, engine: str, full: str, quantized: str) -> list[str]:
    """Return the float32 diff, offered flag and quantized agreement cells for one engine."""
    by_name = {v.name: v for v in build.variants}
    if full not in by_name:
        return ["-", "no", "-"]
    variant = by_name[full]
    diff = "-" if variant.check is None or variant.check.max_abs_diff is None else (
        f"{variant.check.max_abs_diff:.1e}")
    offered = "yes" if variant.offered else "no"
    q = by_name.get(quantized)
    agreement = "-" if q is None or q.agreement is None else f"{q.agreement * 100:.1f}%"
    return [diff, offered, agreement]


def run_one(label: str, model, size: int, workdir: Path) -> tuple[str, bool, bool]:
    """Convert one model; return its markdown row and whether TF.js / any engine passed."""
    start = time.perf_counter()
    build = convert(model, workdir / label.split()[0].lower(), data="shapes",
                    variants=VARIANTS)
    seconds = time.perf_counter() - start
    tfjs = engine_cells(build, "tfjs", "float32", "uint8")
    litert = engine_cells(build, "litert", "tflite-float32", "tflite-int8")
    notes = "; ".join(f"{k}: {v}" for k, v in build.engine_notes.items()
                      if k != "tflite-int8")
    row = (f"| {label} | {size} | {model.count_params():,} | " + " | ".join(tfjs + litert)
           + f" | {seconds:.0f} | {notes or '-'} |")
    return row, tfjs[1] == "yes", tfjs[1] == "yes" or litert[1] == "yes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="Comma-separated families (and/or 'tutorial').")
    parser.add_argument("--out", default=None, help="Also write the markdown here.")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else [*FAMILIES, "tutorial"]
    lines = ["| model | input | params | TF.js float32 diff | TF.js offered | TF.js uint8 agreement "
             "| LiteRT float32 diff | LiteRT offered | LiteRT int8 agreement | convert s | notes |",
             "|" + " --- |" * 11]
    tfjs_ok = any_ok = total = 0
    with tempfile.TemporaryDirectory(prefix="browserml-zoo-") as tmp:
        for name in chosen:
            try:
                if name == "tutorial":
                    row, on_tfjs, on_any = run_one(TUTORIAL, tutorial_model(), 32, Path(tmp))
                else:
                    row, on_tfjs, on_any = run_one(name, family_model(name, FAMILIES[name]),
                                                   FAMILIES[name], Path(tmp))
            except Exception as exc:  # one family failing must not hide the others' results
                first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
                row, on_tfjs, on_any = f"| {name} | failed: {first} |", False, False
            print(row, flush=True)
            lines.append(row)
            total += 1
            tfjs_ok += on_tfjs
            any_ok += on_any
    summary = (f"\nfloat32 within tolerance in real Chromium: TF.js {tfjs_ok}/{total} "
               f"({tfjs_ok / total:.0%}), at least one engine {any_ok}/{total} "
               f"({any_ok / total:.0%})")
    lines.append(summary)
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
