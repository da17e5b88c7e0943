"""TFLite export of the same trained model: float32, float16 weights and full-integer int8.

Built with TensorFlow 2.21's ``TFLiteConverter`` from a SavedModel that Keras 3 exports, and
measured natively with LiteRT (``ai-edge-litert``). int8 is *full-integer* post-training
quantization calibrated on training images, with float input and output so clients feed the same
raw pixels as every other variant; dynamic-range int8 (weights only) is deliberately not offered:
it was measured 7x slower than float32 for MobileNetV2 in LiteRT.js.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import FormatError

TFLITE_VARIANTS = ("tflite-float32", "tflite-float16", "tflite-int8")
TFLITE_FILE = "model.tflite"
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


def converter_for(saved: Path, variant: str, calibration: np.ndarray):
    """Return a TFLiteConverter configured for ``variant``."""
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
    """Write each TFLite variant as ``<out_dir>/<variant>/model.tflite``; return their paths."""
    written = {}
    with tempfile.TemporaryDirectory(prefix="browserml-savedmodel-") as tmp:
        saved = saved_model(model, Path(tmp))
        for variant in variants:
            blob = converter_for(saved, variant, calibration).convert()
            folder = out_dir / variant
            folder.mkdir(parents=True, exist_ok=True)
            (folder / TFLITE_FILE).write_bytes(blob)
            written[variant] = folder / TFLITE_FILE
    return written


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
