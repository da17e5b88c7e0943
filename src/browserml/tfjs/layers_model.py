"""Write and read whole TF.js layers models (``model.json`` + shards)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import FormatError
from .topology import keras_to_tfjs_topology
from .weights import Encoded, encode, read_weights, write_shards

MODEL_FILE = "model.json"


# Where tfjs-layers names a weight differently from Keras 3: {layer class: {keras: tfjs}}.
TFJS_WEIGHT_NAMES = {"DepthwiseConv2D": {"kernel": "depthwise_kernel"}}


def keras_weights(model) -> list[tuple[str, np.ndarray]]:
    """Return the model's weights as ``(name, value)`` in the order and with the names
    tfjs-layers matches them by: ``<layer>/<weight>``, with tfjs-layers' own weight names."""
    named = []
    for layer in model.layers:
        renames = TFJS_WEIGHT_NAMES.get(type(layer).__name__, {})
        for variable in layer.weights:
            short = variable.path.rsplit("/", 1)[-1]
            named.append((f"{layer.name}/{renames.get(short, short)}", np.asarray(variable.numpy())))
    return named


def write_layers_model(model, out_dir: Path, weight_dtype: str, shard_bytes: int,
                       dtypes: dict[str, str] | None = None) -> list[Path]:
    """Write ``model`` as a TF.js layers model with weights stored as ``weight_dtype``, except the
    tensors ``dtypes`` names (``{tfjs weight name: dtype}``, e.g. a uint8 variant's tensors kept
    in float16: the manifest carries each tensor's own dtype); return the written files,
    ``model.json`` first."""
    dtypes = dtypes or {}
    import keras

    out_dir.mkdir(parents=True, exist_ok=True)
    topology = keras_to_tfjs_topology(json.loads(model.to_json()))
    encoded: list[Encoded] = [encode(name, value, dtypes.get(name, weight_dtype))
                              for name, value in keras_weights(model)]
    group = write_shards(out_dir, encoded, shard_bytes)
    document = {
        "format": "layers-model",
        "generatedBy": f"keras v{keras.__version__}",
        "convertedBy": f"browserml v{__version__}",
        "modelTopology": topology,
        "weightsManifest": [group],
    }
    (out_dir / MODEL_FILE).write_text(json.dumps(document))
    return [out_dir / MODEL_FILE, *(out_dir / path for path in group["paths"])]


def read_model_json(path: Path) -> dict:
    """Given a ``model.json``, return it parsed, or raise FormatError with the file and reason."""
    if not path.is_file():
        raise FormatError(f"{path}: not found")
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(document, dict) or "modelTopology" not in document:
        raise FormatError(f"{path}: not a TF.js model (no modelTopology)")
    manifest = document.get("weightsManifest")
    if not isinstance(manifest, list) or not all(
        isinstance(g, dict) and isinstance(g.get("paths"), list) and isinstance(g.get("weights"), list)
        for g in manifest
    ):
        raise FormatError(f"{path}: weightsManifest must be a list of {{paths, weights}} groups")
    return document


def read_layers_weights(model_dir: Path) -> dict[str, np.ndarray]:
    """Return the dequantized weights of a TF.js model folder, exactly as TF.js would see them."""
    document = read_model_json(model_dir / MODEL_FILE)
    return read_weights(model_dir, document["weightsManifest"])


def assign_weights(model, weights: dict[str, np.ndarray]) -> None:
    """Set ``model``'s variables from TF.js-named weights (the inverse of :func:`keras_weights`),
    so Python can measure exactly the numbers a browser will compute with."""
    for name, _ in keras_weights(model):
        if name not in weights:
            raise FormatError(f"weight {name!r} missing from the TF.js model")
    by_name = dict(zip((name for name, _ in keras_weights(model)), model_variables(model),
                       strict=True))
    for name, variable in by_name.items():
        variable.assign(weights[name].reshape(variable.shape))


def model_variables(model) -> list:
    """Return the model's variables in :func:`keras_weights` order."""
    return [variable for layer in model.layers for variable in layer.weights]
