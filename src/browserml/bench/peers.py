"""Peers: the same model in the runtime a team would otherwise use (ONNX Runtime Web).

Exported with ``tf2onnx`` from the same batch-1 SavedModel the TFLite export uses (its Keras 3
path fails on Sequential models), so every runtime computes the same function.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import ModelError
from ..tflite import saved_model

ONNX_FILE = "model.onnx"
OPSET = "17"


def export_onnx(model, out_dir: Path) -> Path:
    """Write ``<out_dir>/onnx-float32/model.onnx`` from the Keras model; return its path."""
    folder = out_dir / "onnx-float32"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / ONNX_FILE
    with tempfile.TemporaryDirectory(prefix="browserml-onnx-") as tmp:
        saved = saved_model(model, Path(tmp))
        result = subprocess.run(
            [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved),
             "--output", str(target), "--opset", OPSET],
            capture_output=True, text=True, check=False)
    if result.returncode != 0 or not target.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"tf2onnx could not export the model: {last}")
    return target
