"""A synthetic digits-shaped TF.js build of a chosen size, for load benchmarks and load tests.

Flatten -> Dense(units, relu) -> Dense(10, softmax) on 28x28x1 inputs, float32 weights drawn at
random (seeded) in shards of ``shard_bytes``: a real TF.js layers model that any backend builds,
whose size is set by ``units`` (8,000 units = 25.4 MB). It measures bytes, not accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..variants import Build, InputSpec, RuntimeCheck, Variant, describe_file, write_build

SIDE = 28


# Synthetic builds stand for converted ones in registry, server and SDK tests and benchmarks, and
# publish requires a runtime check; the real check is tested on real conversions
# (tests/test_convert_keras.py). The record says plainly that nothing was compared.
SYNTHETIC_CHECK = RuntimeCheck(runtime="synthetic fixture", samples=0, passed=True)


def dense_weights(units: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Return the model's weights in TF.js manifest order (name, float32 array)."""
    rng = np.random.default_rng(seed)
    return [("dense/kernel", rng.standard_normal((SIDE * SIDE, units), dtype=np.float32) * 0.01),
            ("dense/bias", np.zeros(units, np.float32)),
            ("dense_1/kernel", rng.standard_normal((units, 10), dtype=np.float32) * 0.01),
            ("dense_1/bias", np.zeros(10, np.float32))]


def model_json(units: int, weights: list[tuple[str, np.ndarray]], paths: list[str]) -> dict:
    """Return the TF.js layers ``model.json`` naming the shard ``paths``."""
    layers = [
        {"class_name": "Flatten", "config": {"name": "flatten", "dtype": "float32",
                                             "batch_input_shape": [None, SIDE, SIDE, 1]}},
        {"class_name": "Dense", "config": {"name": "dense", "units": units, "activation": "relu"}},
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 10, "activation": "softmax"}},
    ]
    return {
        "format": "layers-model", "generatedBy": "browserml-synthetic", "convertedBy": None,
        "modelTopology": {"class_name": "Sequential", "config": {"name": "dense", "layers": layers}},
        "weightsManifest": [{"paths": paths, "weights": [
            {"name": n, "shape": list(w.shape), "dtype": "float32"} for n, w in weights]}],
    }


def write_dense_build(root: Path, units: int = 8000, shard_bytes: int = 4 * 1024 * 1024,
                      name: str = "digits") -> Path:
    """Write a float32-only build dir (``variants.json`` included) under ``root``; return it."""
    weights = dense_weights(units)
    data = b"".join(w.tobytes() for _, w in weights)
    folder = Path(root) / "float32"
    folder.mkdir(parents=True)
    count = -(-len(data) // shard_bytes)
    paths = [f"group1-shard{i + 1}of{count}.bin" for i in range(count)]
    for i, shard in enumerate(paths):
        (folder / shard).write_bytes(data[i * shard_bytes:(i + 1) * shard_bytes])
    (folder / "model.json").write_text(json.dumps(model_json(units, weights, paths)))
    files = [describe_file(root, folder / "model.json", "model"),
             *(describe_file(root, folder / p, "weights") for p in paths)]
    variant = Variant(name="float32", weight_dtype="float32", files=files,
                      bytes=sum(f.bytes for f in files), accuracy=0.9, agreement=1.0,
                      check=SYNTHETIC_CHECK)
    write_build(root, Build(name=name, source="browserml-synthetic", architecture=f"dense-{units}",
                            labels=[str(d) for d in range(10)],
                            input=InputSpec(height=SIDE, width=SIDE, channels=1),
                            test_samples=100, keras_accuracy=0.9, variants=[variant]))
    return Path(root)
