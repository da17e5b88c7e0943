"""Import a TF.js model made elsewhere into a BrowserML build directory.

The source is validated (:mod:`browserml.tfjs.validate`), then written as the same variant layout
``convert`` produces: ``float32`` holds the weights exactly as TF.js would dequantize them, and
``float16`` / ``uint8`` are re-encoded from those numbers. Accuracy fields stay null: there are no
labelled data for a third-party model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import FormatError
from .settings import get_settings
from .tfjs.validate import TfjsModel, load_tfjs_model
from .tfjs.weights import Encoded, encode, read_weights, write_shards
from .variants import Build, InputSpec, Variant, describe_file, prepare_build_dir, write_build

VARIANTS = ("float32", "float16", "uint8")


def input_spec(model: TfjsModel, value_range: tuple[float, float]) -> InputSpec:
    """Return the model's input size from its first layer's batch shape ``[null, H, W, C]``."""
    shape = find_input_shape(model.document["modelTopology"])
    if shape is None or len(shape) != 4 or shape[3] not in (1, 3) or None in shape[1:]:
        raise FormatError(f"{model.path}: need a fixed image input [null, H, W, 1|3], found {shape}")
    return InputSpec(height=shape[1], width=shape[2], channels=shape[3], value_range=value_range)


def find_input_shape(topology: dict) -> list | None:
    """Find the input shape in a layers topology (``batch_input_shape`` / ``batch_shape``) or a
    graph topology (the Placeholder node's ``shape`` attr)."""
    topology = topology.get("model_config", topology)
    for layer in topology.get("config", {}).get("layers", []):
        config = layer.get("config", {})
        shape = config.get("batch_input_shape") or config.get("batch_shape")
        if shape:
            return shape
    for node in topology.get("node", []):
        if node.get("op") == "Placeholder":
            dims = node.get("attr", {}).get("shape", {}).get("shape", {}).get("dim", [])
            return [None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in dims]
    return None


def reencode(model: TfjsModel, weights: dict[str, np.ndarray], dtype: str) -> list[Encoded]:
    """Return every weight re-encoded as ``dtype``; non-float tensors are kept as they are."""
    encoded = []
    for spec in model.weight_specs:
        value = weights[spec["name"]]
        if spec["dtype"] == "float32":
            encoded.append(encode(spec["name"], value, dtype))
        else:
            encoded.append(Encoded({k: spec[k] for k in ("name", "shape", "dtype")},
                                   np.ascontiguousarray(value).tobytes()))
    return encoded


def write_variant(model: TfjsModel, weights: dict[str, np.ndarray], out: Path, dtype: str,
                  shard_bytes: int) -> Variant:
    """Write one variant folder (same topology, re-encoded weights) and describe it."""
    folder = out / dtype
    folder.mkdir(parents=True)
    group = write_shards(folder, reencode(model, weights, dtype), shard_bytes)
    document = {key: value for key, value in model.document.items() if key != "weightsManifest"}
    document["format"] = model.kind
    document["weightsManifest"] = [group]
    (folder / "model.json").write_text(json.dumps(document))
    entries = [describe_file(out, folder / "model.json", "model")]
    entries += [describe_file(out, folder / path, "weights") for path in group["paths"]]
    return Variant(name=dtype, engine="tfjs", format=f"tfjs-{model.kind.split('-')[0]}",
                   weight_dtype=dtype, files=entries, bytes=sum(e.bytes for e in entries))


def import_model(model_json: Path, out: Path, *, name: str | None = None,
                 labels: list[str] | None = None,
                 value_range: tuple[float, float] = (0.0, 255.0)) -> Build:
    """Validate a TF.js model and write it to ``out`` as a build directory; return its build."""
    model = load_tfjs_model(model_json)
    weights = read_weights(model.folder, model.document["weightsManifest"])
    spec = input_spec(model, value_range)
    labels = labels or default_labels(model, weights)
    prepare_build_dir(out)
    shard_bytes = get_settings().shard_bytes
    variants = [write_variant(model, weights, out, dtype, shard_bytes) for dtype in VARIANTS]
    build = Build(name=name or out.name, source=f"import:{Path(model_json).resolve()}",
                  architecture=model.kind, labels=labels, input=spec, variants=variants)
    write_build(out, build)
    return build


def default_labels(model: TfjsModel, weights: dict[str, np.ndarray]) -> list[str]:
    """Return ``class_0..class_{n-1}``: n is the output layer's ``units`` in a layers topology,
    else the last weight's width (manifests are often sorted by name, so the last weight is not
    necessarily the classifier's bias)."""
    units = output_units(model.document["modelTopology"])
    if units is None:
        units = int(weights[model.weight_specs[-1]["name"]].shape[-1])
    return [f"class_{i}" for i in range(units)]


def output_units(topology: dict) -> int | None:
    """Return the ``units`` of a layers topology's (first) output layer, or None."""
    topology = topology.get("model_config", topology)
    config = topology.get("config")
    if not isinstance(config, dict) or not config.get("layers"):
        return None
    layers = config["layers"]
    outputs = config.get("output_layers")
    if outputs:  # Keras 2 writes [[name, node, tensor], ...]; a lone [name, node, tensor] too
        name = outputs[0] if isinstance(outputs[0], str) else outputs[0][0]
    else:
        name = layers[-1].get("config", {}).get("name")
    for layer in layers:
        if name in (layer.get("name"), layer.get("config", {}).get("name")):
            units = layer.get("config", {}).get("units")
            return units if isinstance(units, int) and units > 0 else None
    return None
