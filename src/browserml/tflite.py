"""TFLite export of the same trained model: float32, float16 weights and full-integer int8.

Built with TensorFlow 2.21's ``TFLiteConverter`` from a SavedModel that Keras 3 exports, and
measured natively with LiteRT (``ai-edge-litert``). int8 is *full-integer* post-training
quantization calibrated on training images, with float input and output so clients feed the same
raw pixels as every other variant. Per-channel and per-tensor scales are both tried and the
smaller per-tensor model kept only when it measures as accurate. Dynamic-range int8 (weights
only) is deliberately not offered: it was measured 7x slower than float32 for MobileNetV2 in
LiteRT.js.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import FormatError

TFLITE_VARIANTS = ("tflite-float32", "tflite-float16", "tflite-int8")
TFLITE_FILE = "model.tflite"
PER_TENSOR_FILE = "model.per-tensor.tflite"
# Largest accuracy drop (as a fraction) for which the smaller per-tensor int8 model is preferred.
PER_TENSOR_SLACK = 0.001
FLATBUFFER_ID = b"TFL3"


def saved_model(model, folder: Path) -> Path:
    """Export the Keras model as a SavedModel with a fixed batch of 1; return its folder.

    LiteRT.js refuses a ``[1, H, W, C]`` tensor for a ``[-1, H, W, C]`` input, and browsers
    classify one image at a time, so the signature is pinned to batch 1.
    """
    import tensorflow as tf

    path = folder / "saved_model"
    spec = tf.TensorSpec([1, *model.inputs[0].shape[1:]], tf.float32, name="pixels")
    model.export(str(path), format="tf_saved_model", input_signature=[spec], verbose=False)
    return path


def converter_for(saved: Path, variant: str, calibration: np.ndarray, per_channel: bool = True):
    """Return a TFLiteConverter configured for ``variant`` (int8: per-channel or per-tensor)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    if variant == "tflite-float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "tflite-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
        # A private switch, but the only one: per-tensor scales save ~12 bytes per channel.
        converter._experimental_disable_per_channel = not per_channel
    elif variant != "tflite-float32":
        raise FormatError(f"unknown TFLite variant {variant!r}: use one of {', '.join(TFLITE_VARIANTS)}")
    return converter


def representative(images: np.ndarray):
    """Return the representative-dataset generator int8 calibration draws from."""

    def samples() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None].astype(np.float32)]

    return samples


def export_tflite(model, out_dir: Path, variants: tuple[str, ...], calibration: np.ndarray
                  ) -> dict[str, Path]:
    """Write each TFLite variant as ``<out_dir>/<variant>/model.tflite``; return their paths.

    ``tflite-int8`` is written per-channel; a per-tensor candidate is written beside it as
    ``model.per-tensor.tflite`` for :func:`choose_int8` to measure.
    """
    written = {}
    with tempfile.TemporaryDirectory(prefix="browserml-savedmodel-") as tmp:
        saved = saved_model(model, Path(tmp))
        for variant in variants:
            folder = out_dir / variant
            folder.mkdir(parents=True, exist_ok=True)
            blob = converter_for(saved, variant, calibration).convert()
            (folder / TFLITE_FILE).write_bytes(blob)
            written[variant] = folder / TFLITE_FILE
            if variant == "tflite-int8":
                per_tensor = converter_for(saved, variant, calibration, per_channel=False).convert()
                (folder / PER_TENSOR_FILE).write_bytes(per_tensor)
    return written


def choose_int8(folder: Path, images: np.ndarray, labels: np.ndarray) -> str:
    """Keep the per-tensor int8 model when it measures as accurate as per-channel (within
    ``PER_TENSOR_SLACK``) on the test data, since it is smaller; else keep per-channel. Leaves
    one ``model.tflite``; returns the granularity kept."""
    per_channel, per_tensor = folder / TFLITE_FILE, folder / PER_TENSOR_FILE
    accuracy_channel = float((predict(per_channel, images).argmax(1) == labels).mean())
    accuracy_tensor = float((predict(per_tensor, images).argmax(1) == labels).mean())
    if accuracy_tensor >= accuracy_channel - PER_TENSOR_SLACK:
        per_tensor.replace(per_channel)
        return "per-tensor"
    per_tensor.unlink()
    return "per-channel"


def check_flatbuffer(path: Path) -> None:
    """Raise FormatError naming ``path`` unless it is a TFLite flatbuffer (``TFL3`` at byte 4)."""
    with path.open("rb") as handle:
        head = handle.read(8)
    if len(head) < 8 or head[4:8] != FLATBUFFER_ID:
        raise FormatError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")


def predict(path: Path, images: np.ndarray, threads: int = 2) -> np.ndarray:
    """Run a TFLite file natively with LiteRT over ``images`` (batch 1, as a browser does);
    return the stacked outputs."""
    from ai_edge_litert.interpreter import Interpreter

    check_flatbuffer(path)
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for image in images:
        interpreter.set_tensor(input_index, image[None].astype(np.float32))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_index)[0].copy())
    return np.stack(outputs)
