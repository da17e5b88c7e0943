"""Keras 3 model config -> the Keras 2 shaped topology that tfjs-layers 4.x reads.

tfjs-layers deserialises Keras 2 JSON. Keras 3 changed the shape in a few places, and
``tf.models.modelFromJSON`` of a Keras 3 config fails ("An InputLayer should be passed either a
`batchInputShape` or an `inputShape`"). We translate:

* ``InputLayer.batch_shape`` -> ``batch_input_shape``;
* ``DTypePolicy`` objects -> their name; serialised objects lose ``module`` / ``registered_name``;
  layers lose ``build_config``;
* functional ``inbound_nodes`` ``[{"args": [tensor | [tensors]], "kwargs": {}}]`` ->
  ``[[[layer, node_index, tensor_index, {}], ...]]``;
* keys tfjs-layers does not know and that hold their neutral default are dropped;
* initializers, regularizers and constraints are dropped: inference never uses them, and Keras 3
  writes some (``LecunNormal``, its ``L1L2``) in forms tfjs-layers cannot read;
* activation names Keras 3 writes for functions tfjs-layers knows under another name are mapped
  (``silu`` is TF.js's ``swish``).

Layers tfjs-layers lacks or defines differently are rewritten before this step, in Keras, by
:mod:`browserml.tfjs.rewrite`.

A layer class tfjs-layers cannot build is refused here, naming it, rather than at load time in a
user's browser.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import FormatError

KERAS2_VERSION = "2.15.0"

# Layer classes tfjs-layers 4.22 deserialises (the subset a Keras image classifier uses).
# Resizing and CenterCrop are absent on purpose: tfjs-layers 4.22's own fail at predict.
SUPPORTED_LAYERS = {
    "InputLayer", "Rescaling", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D",
    "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Dropout",
    "Dense", "BatchNormalization", "ReLU", "Activation", "ZeroPadding2D", "Add", "Concatenate",
    "Multiply", "Reshape", "Softmax", "LeakyReLU", "LayerNormalization",
    "SpatialDropout2D", "UpSampling2D", "Conv2DTranspose", "Cropping2D", "Permute",
    "PReLU", "ELU", "ThresholdedReLU", "Average", "Maximum", "Minimum", "Dot",
    "Conv1D", "Conv3D", "MaxPooling1D", "AveragePooling1D", "GlobalAveragePooling1D",
    "GlobalMaxPooling1D", "MaxPooling3D", "AveragePooling3D", "LSTM", "GRU", "SimpleRNN",
    "Bidirectional", "TimeDistributed", "Embedding", "RepeatVector", "Masking",
    "BrowserMLResize",
}
# Keras 3 activation names that tfjs-layers knows under another name.
ACTIVATION_NAMES = {"silu": "swish", "log_softmax": "logSoftmax"}
# Config keys ending so are dropped: inference does not use them.
TRAINING_KEY_SUFFIXES = ("_initializer", "_regularizer", "_constraint")

# Keras 3 config keys with no tfjs-layers meaning, dropped when they hold these neutral values.
NEUTRAL_KEYS = {
    "optional": False, "ragged": False, "groups": 1, "lora_rank": None, "lora_alpha": None,
    "synchronized": False, "keepdims": False, "quantization_config": None,
    "input_axes": None, "output_axes": None, "negative_slope": 0.0, "threshold": 0.0,
    "rms_scaling": False,
}
# Keras 3 keys dropped whatever their value (they only matter for training-time behaviour that
# TF.js inference never uses).
DROPPED_KEYS = {"module", "registered_name", "build_config", "compile_config"}


def translate_object(value: Any) -> Any:
    """Recursively turn Keras 3 serialised values into their Keras 2 form."""
    if isinstance(value, list):
        return [translate_object(item) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get("class_name") == "DTypePolicy":
        return value["config"]["name"]
    out = {}
    for key, item in value.items():
        if key in DROPPED_KEYS or (key in NEUTRAL_KEYS and item == NEUTRAL_KEYS[key]):
            continue
        if key.endswith(TRAINING_KEY_SUFFIXES) or key == "activity_regularizer":
            continue
        if key in ("activation", "recurrent_activation") and isinstance(item, str):
            item = ACTIVATION_NAMES.get(item, item)
        out[key] = translate_object(item)
    return out


def translate_node_args(args: list) -> list[list]:
    """Given a Keras 3 inbound node's ``args``, return Keras 2's list of ``[layer, node, index,
    kwargs]`` entries (a merge layer's first argument is a list of tensors)."""
    first = args[0] if args else []
    tensors = first if isinstance(first, list) else [first]
    entries = []
    for tensor in tensors:
        if not (isinstance(tensor, dict) and tensor.get("class_name") == "__keras_tensor__"):
            raise FormatError(f"unsupported inbound node argument: {json.dumps(tensor)[:80]}")
        layer, node_index, tensor_index = tensor["config"]["keras_history"]
        entries.append([layer, node_index, tensor_index, {}])
    return entries


def translate_layer(layer: dict) -> dict:
    """Return one layer entry in Keras 2 form, refusing classes tfjs-layers cannot build."""
    class_name = layer["class_name"]
    if class_name == "Lambda":
        raise FormatError(
            f"layer {layer.get('name') or layer['config'].get('name')!r} is a Lambda holding "
            "Python code, which TF.js cannot run; replace it with Keras layers (or keras.ops in a "
            "functional model) for TF.js variants; the TFLite variants serve this model")
    if class_name not in SUPPORTED_LAYERS:
        raise FormatError(
            f"layer {layer.get('name') or layer['config'].get('name')!r} is a {class_name}, "
            "which TF.js layers cannot load; the TFLite variants serve this model"
        )
    raw = dict(layer["config"])
    if class_name == "LeakyReLU" and "negative_slope" in raw:
        raw["alpha"] = raw.pop("negative_slope")  # Keras 2 / tfjs-layers call it alpha
    config = translate_object(raw)
    if class_name == "ReLU" and (config.get("negative_slope") or config.get("threshold")):
        raise FormatError(
            f"layer {layer.get('name') or config.get('name')!r} is a ReLU with negative_slope or "
            "threshold, which TF.js layers cannot load (its ReLU has only max_value)"
        )
    refuse_unfaithful(layer.get("name") or config.get("name"), class_name, config)
    if class_name == "InputLayer" and "batch_shape" in config:
        config["batch_input_shape"] = config.pop("batch_shape")
    out = {"class_name": class_name, "config": config}
    if "name" in layer:
        out["name"] = layer["name"]
    if "inbound_nodes" in layer:
        out["inbound_nodes"] = [translate_node_args(node["args"]) for node in layer["inbound_nodes"]]
    return out


def refuse_unfaithful(name: str, class_name: str, config: dict) -> None:
    """Raise FormatError for layer forms tfjs-layers loads but computes differently from Keras."""
    if class_name == "UpSampling2D" and config.get("interpolation", "nearest") != "nearest":
        raise FormatError(f"layer {name!r} is an UpSampling2D with {config['interpolation']} "
                          "interpolation, which TF.js layers computes differently; the TFLite "
                          "variants serve this model")
    if class_name == "LayerNormalization" and config.get("rms_scaling"):
        raise FormatError(f"layer {name!r} is a LayerNormalization with rms_scaling, which TF.js "
                          "layers cannot run; the TFLite variants serve this model")
    if config.get("activation") in ("hard_sigmoid", "hard_silu", "hard_swish"):
        raise FormatError(f"layer {name!r} uses Keras 3's {config['activation']}, which TF.js "
                          "lacks or defines differently; write the model through "
                          "browserml.tfjs.rewrite.tfjs_model, which rewrites it")


def keras_to_tfjs_topology(keras_config: dict) -> dict:
    """Given ``json.loads(model.to_json())`` of a Keras 3 Sequential or Functional model, return
    the ``modelTopology`` object tfjs-layers 4.x loads."""
    class_name = keras_config["class_name"]
    if class_name not in ("Sequential", "Functional"):
        raise FormatError(f"a {class_name} model cannot be written as a TF.js layers model")
    config = keras_config["config"]
    layers = [translate_layer(layer) for layer in config["layers"]]
    if class_name == "Sequential":
        model_config = {"name": config["name"], "layers": layers}
    else:
        model_config = {
            "name": config["name"],
            "layers": layers,
            "input_layers": wrap_endpoints(config["input_layers"]),
            "output_layers": wrap_endpoints(config["output_layers"]),
        }
    return {"class_name": "Model" if class_name == "Functional" else class_name,
            "config": model_config, "keras_version": KERAS2_VERSION, "backend": "tensorflow"}


def wrap_endpoints(endpoints: list) -> list:
    """Keras 3 writes a single input/output as ``[name, 0, 0]``; Keras 2 always used a list."""
    if endpoints and isinstance(endpoints[0], str):
        return [endpoints]
    return endpoints
