"""TFLite export of the same trained model: float32, float16 weights and full-integer int8.

Built with TensorFlow 2.21's ``TFLiteConverter`` from a SavedModel that Keras 3 exports, and
measured natively with LiteRT (``ai-edge-litert``). int8 is *full-integer* post-training
quantization calibrated on training images, with float input and output so clients feed the same
raw pixels as every other variant. Per-channel and per-tensor scales are both tried and the
smaller per-tensor model kept only when it measures as accurate. Dynamic-range int8 (weights
only) is deliberately not offered: it was measured 7x slower than float32 for MobileNetV2 in
LiteRT.js.

When full-integer int8 misses the accuracy budget (measured as top-1 agreement with float32 on
the calibration images), :func:`mix_int8` leaves the ops TFLite's own QuantizationDebugger
finds worst in float (``denylisted_nodes``): a mixed int8/float model LiteRT runs with
dequantize/quantize ops around them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FormatError

TFLITE_VARIANTS = ("tflite-float32", "tflite-float16", "tflite-int8")
TFLITE_FILE = "model.tflite"
PER_TENSOR_FILE = "model.per-tensor.tflite"
# Largest agreement drop (as a fraction) for which the smaller per-tensor int8 model is preferred.
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


def int8_file(model, calibration: np.ndarray, path: Path) -> Path:
    """Write ``model`` (as its weights are now) to ``path`` as per-channel int8 calibrated on
    ``calibration``; return ``path``."""
    with tempfile.TemporaryDirectory(prefix="browserml-savedmodel-") as tmp:
        blob = converter_for(saved_model(model, Path(tmp)), "tflite-int8", calibration).convert()
    path.write_bytes(blob)
    return path


def choose_int8(folder: Path, images: np.ndarray, expected: np.ndarray) -> tuple[str, float]:
    """Keep the per-tensor int8 model when its top-1 agreement with float32 (``expected``: the
    float model's classes for ``images``) is within ``PER_TENSOR_SLACK`` of per-channel's, since
    it is smaller; else keep per-channel. ``images`` are calibration images, never the test set
    whose accuracy is then reported (choosing on it would flatter that figure). Leaves one
    ``model.tflite``; returns the granularity kept and its agreement (plain int8's figure for
    :func:`mix_int8`, so it is not measured twice)."""
    per_channel, per_tensor = folder / TFLITE_FILE, folder / PER_TENSOR_FILE
    agreement_channel = float((predict(per_channel, images).argmax(1) == expected).mean())
    agreement_tensor = float((predict(per_tensor, images).argmax(1) == expected).mean())
    if agreement_tensor >= agreement_channel - PER_TENSOR_SLACK:
        per_tensor.replace(per_channel)
        return "per-tensor", agreement_tensor
    per_tensor.unlink()
    return "per-channel", agreement_channel


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


def debugger_ranking(saved: Path, calibration: np.ndarray, probe: np.ndarray):
    """Run TFLite's QuantizationDebugger (per-channel int8, calibrated on ``calibration``) over
    the ``probe`` images; return ``(debugger, rows)``: every quantized op's output tensor with its
    ``error_per_step`` (RMS error of the op's int8 output over its step, the debugger's
    ``rmse/scale``), worst first. Its ``denylisted_nodes`` option then leaves chosen ops in
    float."""
    import csv
    import io

    import tensorflow as tf

    converter = converter_for(saved, "tflite-int8", calibration)
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                         debug_dataset=representative(probe))
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    dump.seek(0)
    rows = [{"name": row["tensor_name"], "op": row["op_name"], "size": int(float(row["num_elements"])),
             "error_per_step": float(np.sqrt(float(row["mean_squared_error"])) / float(row["scale"]))}
            for row in csv.DictReader(dump) if float(row["scale"]) > 0]
    rows.sort(key=lambda row: -row["error_per_step"])
    return debugger, rows


def with_float_ops(debugger, names: list[str]) -> bytes:
    """Return the int8 model with the ops writing ``names`` left in float (TFLite inserts the
    dequantize / quantize ops around them)."""
    import tensorflow as tf

    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names)
    return debugger.get_nondebug_quantized_model()


def float_op_ladder(count: int, largest: int) -> list[int]:
    """How many of the worst ops to try in float: 1, 2, 4, ... up to ``largest`` (of ``count``;
    at least one op is always left quantized, which the debugger needs)."""
    top = max(1, min(largest, count - 1))
    ladder, k = [], 1
    while k < top:
        ladder.append(k)
        k *= 2
    return [*ladder, top]


@dataclass
class MixedInt8:
    """What :func:`mix_int8` measured and chose. ``kept``: the debugger's rows left in float,
    worst first (empty: plain int8 kept); ``tried``: ``{ops in float: agreement}``."""

    samples: int
    probe_samples: int
    target: float
    plain_agreement: float
    agreement: float
    candidates: int
    kept: list[dict] = field(default_factory=list)
    tried: dict[int, float] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return self.agreement >= self.target


def mix_int8(model, path: Path, calibration: np.ndarray, selection: np.ndarray,
             reference: np.ndarray, plain: float, target: float, probe_samples: int,
             max_float_fraction: float, status: Callable[[str], None] = lambda s: None) -> MixedInt8:
    """Given the int8 model at ``path``, its top-1 agreement ``plain`` with float32 on the
    ``selection`` images (calibration images: never the test set; ``reference`` = the float
    model's outputs on them, both measured once by the caller) and the agreement it must reach,
    leave its most sensitive ops in float until it does, and rewrite ``path`` with the result.

    Only when plain int8 misses ``target`` is TFLite's QuantizationDebugger set up
    (per-channel, calibrated on ``calibration``). Each quantized op is then left alone in float
    (``denylisted_nodes``) and the model measured on ``probe_samples`` images: ops are ranked by
    the top-1 disagreements and mean output change with float32 that remain, fewest first (the
    debugger's own rmse/scale is recorded but not used to rank: it is relative to the op's step,
    so an op whose range an outlier sets, as in a fine-tuned head, looks harmless). The best
    1, 2, 4, ... ops (at most ``max_float_fraction`` of them) are then left in float until the
    agreement on all the images meets ``target``. When no step meets it, the fewest ops with the
    best agreement measured are kept (plain int8 when none beats it)."""
    selection = selection.astype(np.float32)
    top1 = reference.argmax(1)
    probe = min(len(selection), probe_samples)

    def measure(candidate: Path, count: int) -> tuple[int, float]:
        got = predict(candidate, selection[:count])
        return (int((got.argmax(1) != top1[:count]).sum()),
                float(np.abs(got - reference[:count]).mean()))

    result = MixedInt8(samples=len(selection), probe_samples=0, target=target,
                       plain_agreement=plain, agreement=plain, candidates=0)
    if result.met:
        return result
    with tempfile.TemporaryDirectory(prefix="browserml-int8-") as tmp:
        candidate = Path(tmp) / "candidate.tflite"
        status("int8: quantization debugger")
        debugger, rows = debugger_ranking(saved_model(model, Path(tmp)), calibration,
                                          selection[:probe])
        result.probe_samples, result.candidates = probe, len(rows)
        for row in rows:
            candidate.write_bytes(with_float_ops(debugger, [row["name"]]))
            row["disagreements"], row["mean_change"] = measure(candidate, probe)
            status(f"int8: rank {row['op']}")
        rows.sort(key=lambda row: (row["disagreements"], row["mean_change"]))
        blobs = {}
        for count in float_op_ladder(len(rows), max(1, int(len(rows) * max_float_fraction))):
            blobs[count] = with_float_ops(debugger, [row["name"] for row in rows[:count]])
            candidate.write_bytes(blobs[count])
            result.tried[count] = 1 - measure(candidate, len(selection))[0] / len(selection)
            status(f"int8: {count} ops in float")
            if result.tried[count] >= target:
                break
    best = max(result.tried.values())
    if best <= plain:
        return result
    count = min(k for k, a in result.tried.items() if a == best)
    path.write_bytes(blobs[count])
    result.kept, result.agreement = rows[:count], best
    return result
