"""Where a run's TF.js uint8 accuracy loss comes from, tensor by tensor (issue 16), in one run.

Puts TF.js uint8 weights (``browserml.tfjs.weights.encode`` then ``decode``, i.e. what TF.js
dequantizes at load) back into the run's Keras model and scores its test set (``test.npz``)
against float32: all tensors; only the tensors already on a 256-level grid (``source_grid``,
e.g. the frozen layers of an nsfwjs backbone); then each other tensor alone on top of those.
Keras, not Chromium: the all-tensors figure matches ``browserml convert``'s check in TF.js.

    .venv/bin/python benchmarks/bench_uint8_tensors.py /tmp/i16/bench/runs/finetune
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a 'browserml train' run folder with test.npz")
    args = parser.parse_args()
    import keras

    from browserml.tfjs.weights import decode, encode, source_grid

    model = keras.models.load_model(args.run / "model.keras", compile=False)
    test = np.load(args.run / "test.npz")
    images, labels = test["images"], test["labels"]
    floats = {w.path: np.asarray(w.numpy(), np.float32) for w in model.weights}
    base = model.predict(images, batch_size=32, verbose=0).argmax(1)
    base_accuracy = float((base == labels).mean())

    def score(quantized: set[str]) -> dict:
        for weight in model.weights:
            value = floats[weight.path]
            if weight.path in quantized:
                encoded = encode(weight.path, value, "uint8")
                value = decode(encoded.spec, encoded.data)
            weight.assign(value)
        predicted = model.predict(images, batch_size=32, verbose=0).argmax(1)
        return {"change_pp": round(float((predicted == labels).mean() - base_accuracy) * 100, 2),
                "agreement": round(float((predicted == base).mean()), 4)}

    sized = {name for name, value in floats.items() if value.size}
    on_grid = {name for name in sized if source_grid(floats[name]) is not None}
    rows = {"float32 accuracy": round(base_accuracy * 100, 2), "images": len(labels),
            "tensors": len(sized), "on a uint8 grid": len(on_grid),
            "all tensors uint8": score(sized), "only on-grid tensors uint8": score(on_grid),
            "on-grid + one other tensor uint8": {}}
    for name in sorted(sized - on_grid):
        rows["on-grid + one other tensor uint8"][f"{name} ({floats[name].size})"] = score(
            on_grid | {name})
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
