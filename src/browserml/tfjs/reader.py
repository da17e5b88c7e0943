"""TF.js layers model -> Keras 3 model: the reverse of :mod:`browserml.tfjs.layers_model`.

So a team can fine-tune a model that already runs in browsers. The topology is the Keras 2 JSON
that tfjs-layers reads and writes (``modelTopology`` directly, or wrapped as Keras 2.2.4 wrote it:
``{"keras_version", "backend", "model_config", "training_config"}``); the weights are the manifest's
shards, dequantized exactly as TF.js does at load (uint8 / uint16 / float16 included), so the Keras
model computes what the browser computes.

The graph is rebuilt layer by layer (``keras.layers.deserialize`` + calls on the inbound tensors)
rather than through Keras' own legacy-config loader, which is private API and refuses Keras 2
class names such as ``Model``. Keras 2 config keys that Keras 3 layers no longer take are dropped
only when they hold their neutral value; any other unknown key is refused, naming it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError
from .layers_model import assign_weights
from .validate import load_tfjs_model
from .weights import read_weights

# Keras 2 keys absent from Keras 3 layer signatures, harmless at these values.
LEGACY_NEUTRAL = {"sparse": False, "ragged": False, "batch_size": None, "noise_shape": None}
# Keras 2 keys that always meant nothing at inference (or that Keras 3 reads another way).
LEGACY_DROPPED = {"batch_input_shape", "input_shape", "input_dtype"}
# Keyword arguments every Keras 3 layer accepts (keras.layers.Layer.__init__).
BASE_LAYER_KEYS = {"name", "trainable", "dtype", "autocast", "input_dim", "input_shape",
                   "batch_input_shape"}


def model_config(topology: dict) -> dict:
    """Return the ``{"class_name", "config"}`` model entry of a TF.js ``modelTopology``, unwrapping
    Keras 2.2.4's ``model_config`` envelope."""
    inner = topology.get("model_config", topology)
    if not isinstance(inner, dict) or inner.get("class_name") not in ("Model", "Functional",
                                                                       "Sequential"):
        found = inner.get("class_name") if isinstance(inner, dict) else type(inner).__name__
        raise FormatError(f"model topology is a {found!r}, not a Keras Model or Sequential")
    return inner


def layer_class(class_name: str):
    """Return the Keras 3 layer class for a Keras 2 class name, or raise FormatError."""
    import keras

    cls = getattr(keras.layers, class_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, keras.layers.Layer)):
        raise FormatError(f"layer class {class_name!r} has no Keras 3 equivalent")
    return cls


def keras3_layer_config(class_name: str, config: dict) -> dict:
    """Return a Keras 2 layer config that ``cls.from_config`` of Keras 3 accepts."""
    cls = layer_class(class_name)
    accepted = set(inspect.signature(cls.__init__).parameters) | BASE_LAYER_KEYS
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in LEGACY_DROPPED:
            continue
        if key not in accepted:
            if key in LEGACY_NEUTRAL and value == LEGACY_NEUTRAL[key]:
                continue
            raise FormatError(f"layer {config.get('name')!r} ({class_name}): option {key!r}="
                              f"{value!r} has no Keras 3 meaning")
        out[key] = value
    if class_name == "InputLayer":
        shape = config.get("batch_input_shape") or config.get("batch_shape")
        if not shape:
            raise FormatError(f"input layer {config.get('name')!r} has no batch_input_shape")
        out = {"batch_shape": tuple(shape), "dtype": config.get("dtype", "float32"),
               "name": config.get("name")}
    return out


def make_layer(entry: dict):
    """Given one topology layer entry, return the (unbuilt) Keras 3 layer."""
    class_name = entry.get("class_name")
    config = keras3_layer_config(class_name, entry.get("config", {}))
    try:
        return layer_class(class_name).from_config(config)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"layer {config.get('name')!r} ({class_name}): {exc}") from None


def inbound(entry: dict) -> list[tuple[str, int, int]]:
    """Return a functional layer's inputs as ``(layer, node, tensor)``; a layer called more than
    once (a shared layer) is refused, an image classifier never has one."""
    nodes = entry.get("inbound_nodes", [])
    if len(nodes) > 1:
        raise FormatError(f"layer {entry.get('name')!r} is shared ({len(nodes)} calls); "
                          "shared layers cannot be read back")
    if not nodes:
        return []
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3 shaped entries, as a newer writer may emit
        args = node.get("args", [])
        tensors = args[0] if args and isinstance(args[0], list) else args
        return [tuple(t["config"]["keras_history"]) for t in tensors]
    return [(item[0], item[1], item[2]) for item in node]


def build_functional(config: dict):
    """Rebuild a Keras 2 functional ``config`` (``layers``, ``input_layers``, ``output_layers``)."""
    import keras

    tensors: dict[str, Any] = {}
    inputs = []
    for entry in config["layers"]:
        name = entry.get("name") or entry["config"]["name"]
        layer = make_layer(entry)
        if entry["class_name"] == "InputLayer":
            tensors[name] = layer.output
            inputs.append(name)
            continue
        sources = inbound(entry)
        missing = [src for src, _, _ in sources if src not in tensors]
        if missing or not sources:
            raise FormatError(f"layer {name!r}: inputs {missing or 'none'} are not defined before it")
        args = [tensors[src] for src, _, _ in sources]
        tensors[name] = layer(args if len(args) > 1 else args[0])
    ends = {key: [item[0] for item in endpoints(config.get(key, []))]
            for key in ("input_layers", "output_layers")}
    outputs = [tensors[name] for name in ends["output_layers"]]
    model_inputs = [tensors[name] for name in ends["input_layers"] or inputs]
    return keras.Model(model_inputs[0] if len(model_inputs) == 1 else model_inputs,
                       outputs[0] if len(outputs) == 1 else outputs, name=config.get("name"))


def endpoints(value: list) -> list:
    """Keras 2 writes endpoints as ``[[name, node, tensor], ...]``; a lone one may be unwrapped."""
    return [value] if value and isinstance(value[0], str) else value


def build_sequential(config: dict | list):
    """Rebuild a Keras 2 Sequential: its first layer carries ``batch_input_shape``."""
    import keras

    entries = config["layers"] if isinstance(config, dict) else config
    if not entries:
        raise FormatError("the Sequential model has no layers")
    shape = entries[0].get("config", {}).get("batch_input_shape")
    if entries[0].get("class_name") == "InputLayer":
        shape = shape or entries[0]["config"].get("batch_shape")
        entries = entries[1:]
    if not shape:
        raise FormatError("the Sequential model's first layer has no batch_input_shape")
    tensor = inputs = keras.Input(batch_shape=tuple(shape), name="input")
    for entry in entries:
        tensor = make_layer(entry)(tensor)
    name = config.get("name") if isinstance(config, dict) else None
    return keras.Model(inputs, tensor, name=name)


def topology_to_keras(topology: dict):
    """Given a TF.js layers ``modelTopology``, return the Keras 3 functional model (random
    weights). A Sequential becomes a functional model with the same layers and names."""
    inner = model_config(topology)
    if inner["class_name"] == "Sequential":
        return build_sequential(inner["config"])
    return build_functional(inner["config"])


def read_keras_model(model_json: Path):
    """Given a TF.js layers ``model.json`` (or its folder), return the Keras 3 model with the
    weights TF.js would load, or raise FormatError naming the file and the reason."""
    model = load_tfjs_model(Path(model_json))
    if model.kind != "layers-model":
        raise FormatError(f"{model.path}: a TF.js graph model has no Keras topology; "
                          "only layers models can be read back into Keras")
    try:
        keras_model = topology_to_keras(model.document["modelTopology"])
        weights = read_weights(model.folder, model.document["weightsManifest"])
        assign_weights(keras_model, normalise_names(weights))
    except FormatError as exc:
        raise FormatError(f"{model.path}: {exc}") from None
    return keras_model


def normalise_names(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Strip the ``:0`` suffix some converters keep, and a model-name prefix
    (``model_1/Conv1/kernel``), so names read ``<layer>/<weight>`` as :func:`keras_weights`
    spells them."""
    out = {}
    for name, value in weights.items():
        name = name.split(":")[0]
        parts = name.split("/")
        out["/".join(parts[-2:])] = value
    return out
