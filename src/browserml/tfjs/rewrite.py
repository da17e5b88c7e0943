"""Rewrite layers tfjs-layers lacks (or defines differently) into equivalent layers it has.

Called by :func:`browserml.inference_model.inference_model` for every operation of the model; each
rewrite builds plain Keras layers with the original's weights, so the result is still a Keras
model that Python can compare with the original (:func:`tfjs_model` does) before a browser ever
sees it. Every rewrite is exact algebra, not an approximation:

* ``hard_sigmoid`` (Keras 3: ``relu6(x + 3) / 6``; TF.js: ``clip(0.2x + 0.5)``, a different
  function) -> ``Rescaling(1, 3)`` -> ``ReLU(6)`` -> ``Rescaling(1/6)``; ``hard_silu`` /
  ``hard_swish`` -> ``Multiply([x, hard_sigmoid(x)])``; ``leaky_relu`` -> ``LeakyReLU(0.2)``. An
  activation inside a layer (``Conv2D(activation="hard_silu")``) is split off first.
* ``x + c``, ``x - c``, ``c - x``, ``x * c``, ``x / c`` with a scalar ``c`` -> ``Rescaling``;
  ``a - b`` (an op or the ``Subtract`` layer, which tfjs-layers lacks) -> ``Add([a, -b])``.
* ``Normalization`` -> ``BatchNormalization`` (``epsilon=0``, the variance floored as Keras floors
  the standard deviation); a per-channel ``Rescaling`` -> ``BatchNormalization`` too.
* keepdims global pooling -> pooling + ``Reshape``.
* grouped ``Conv2D``: one group per input channel -> ``DepthwiseConv2D``, else a ``Conv2D`` with a
  block-diagonal kernel (the zero blocks add exact zeros).
* ConvNeXt's ``LayerScale`` -> a 1x1 ``DepthwiseConv2D``; InceptionResNetV2's
  ``CustomScaleLayer`` -> ``Rescaling`` + ``Add``; ``CenterCrop`` of a static size ->
  ``Cropping2D``.
* ``Resizing`` and bilinear ``UpSampling2D`` -> the SDK's own ``BrowserMLResize`` layer
  (``sdk/src/engines/tfjs-layers.js``, registered by the SDK and the harness pages before any
  model loads), since tfjs-layers' versions fail at predict or ignore bilinear.

What cannot be expressed raises FormatError naming the layer; ``convert`` then ships the TFLite
variants alone.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import FormatError
from ..inference_model import check_same, inference_model
from .topology import keras_to_tfjs_topology

# Activation names tfjs-layers runs as Keras defines them (silu under the name swish, mapped in
# topology.py).
TFJS_ACTIVATIONS = {"elu", "selu", "relu", "relu6", "linear", "sigmoid", "softplus", "softsign",
                    "tanh", "softmax", "log_softmax", "gelu", "mish", "swish", "silu"}
REWRITTEN_ACTIVATIONS = {"hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu"}
CONSTANT_OPS = {"Add", "Subtract", "Multiply", "Divide", "TrueDivide"}
KEEPDIMS_POOLING = {"GlobalAveragePooling1D", "GlobalMaxPooling1D", "GlobalAveragePooling2D",
                    "GlobalMaxPooling2D"}
WAY_OUT = "the TFLite variants serve this model"


def tfjs_model(model):
    """Given a Keras model, return its inference model with every layer in a form tfjs-layers
    runs as Keras does, checked against the original in Keras. Raises FormatError naming the
    first layer that has no such form."""
    rebuilt = inference_model(model, rewrite=rewrite_for_tfjs)
    keras_to_tfjs_topology(json.loads(rebuilt.to_json()))  # refuses what TF.js cannot load
    check_same(model, rebuilt, "TF.js translation")
    return rebuilt


def unsupported(operation, what: str) -> FormatError:
    """Return the one-line error for an operation TF.js layers cannot express."""
    return FormatError(f"layer {operation.name!r} ({type(operation).__name__}) {what}, which TF.js "
                       f"layers cannot run; {WAY_OUT}")


def rewrite_for_tfjs(operation, args: list, kwargs: dict) -> Any:
    """The :func:`inference_model` hook: return replacement outputs, or None to keep the layer."""
    import keras

    if not isinstance(operation, keras.layers.Layer):
        return rewrite_operation(operation, args)
    name = type(operation).__name__
    handler = LAYER_REWRITES.get(name)
    if handler is not None:
        replaced = handler(operation, args)
        if replaced is not None:
            return replaced
    return split_activation(operation, args, kwargs)


def activation_name(operation, key: str = "activation") -> str | None:
    """Return the layer's activation as Keras serialises it (a name), or None if it has none."""
    value = operation.get_config().get(key) if hasattr(operation, key) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value.get("config", value.get("class_name"))
    return str(value)


def split_activation(operation, args: list, kwargs: dict) -> Any:
    """For a layer whose activation TF.js lacks, return the layer run linear followed by the
    activation rebuilt from TF.js layers; None when its activation is fine as it is."""
    act = activation_name(operation)
    for key in ("recurrent_activation",):
        other = activation_name(operation, key)
        if other is not None and other not in TFJS_ACTIVATIONS:
            raise unsupported(operation, f"has {key} {other!r}")
    if act is None or act in TFJS_ACTIVATIONS:
        return None
    if act not in REWRITTEN_ACTIVATIONS:
        raise unsupported(operation, f"has activation {act!r}")
    if type(operation).__name__ == "Activation":
        return activation_layers(args[0], act, operation.name)
    linear = clone(operation, name=f"{operation.name}_linear", activation="linear")
    y = linear(*args, **kwargs)
    linear.set_weights(operation.get_weights())
    return activation_layers(y, act, operation.name)


def clone(operation, name: str, **changes):
    """Return a fresh layer of the same class and config, with ``changes`` applied."""
    config = {**operation.get_config(), "name": name, **changes}
    return type(operation).from_config(config)


def activation_layers(x, act: str, name: str):
    """Return ``act(x)`` built from layers TF.js has, the last one named ``name``."""
    from keras import layers

    if act == "leaky_relu":
        return layers.LeakyReLU(negative_slope=0.2, name=name)(x)
    if act == "hard_sigmoid":
        return hard_sigmoid(x, name)
    return layers.Multiply(name=name)([x, hard_sigmoid(x, f"{name}_hard_sigmoid")])


def hard_sigmoid(x, name: str):
    """Keras 3's ``hard_sigmoid``: ``relu6(x + 3) / 6``, in three TF.js layers."""
    from keras import layers

    x = layers.Rescaling(1.0, offset=3.0, name=f"{name}_plus3")(x)
    x = layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x)
    return layers.Rescaling(1.0 / 6.0, name=name)(x)


def rewrite_operation(operation, args: list):
    """Rewrite a ``keras.ops`` operation in the graph (``x + 3.0``): with one tensor and a scalar
    constant it becomes a Rescaling, with two tensors the matching merge layer."""
    import keras
    from keras import layers

    kind = type(operation).__name__
    tensors = [a for a in args if isinstance(a, keras.KerasTensor)]
    if kind not in CONSTANT_OPS or len(args) != 2:
        raise FormatError(f"operation {operation.name!r} (keras.ops {kind}) has no TF.js layer; "
                          f"{WAY_OUT}")
    if len(tensors) == 2:
        if kind == "Subtract":
            return subtract(args[0], args[1], operation.name)
        merge = {"Add": layers.Add, "Multiply": layers.Multiply}.get(kind)
        if merge is None:
            raise FormatError(f"operation {operation.name!r} divides two tensors, which TF.js "
                              f"layers cannot run; {WAY_OUT}")
        return merge(name=operation.name)(args)
    constant = np.asarray(args[1] if tensors[0] is args[0] else args[0], dtype=np.float64)
    if constant.size != 1:
        raise FormatError(f"operation {operation.name!r} ({kind}) uses a constant of shape "
                          f"{constant.shape}; TF.js layers can only add or multiply scalars; "
                          f"{WAY_OUT}")
    c, first = float(constant.reshape(())), tensors[0] is args[0]
    scale, offset = {
        "Add": (1.0, c), "Multiply": (c, 0.0),
        "Subtract": (1.0, -c) if first else (-1.0, c),
        "Divide": (1.0 / c, 0.0) if first else None, "TrueDivide": (1.0 / c, 0.0) if first else None,
    }[kind] or (None, None)
    if scale is None:
        raise FormatError(f"operation {operation.name!r} divides a constant by a tensor, which "
                          f"TF.js layers cannot run; {WAY_OUT}")
    return layers.Rescaling(scale, offset=offset, name=operation.name)(tensors[0])


def subtract(a, b, name: str):
    """``a - b`` as ``Add([a, Rescaling(-1)(b)])`` (tfjs-layers has no Subtract layer; negation
    is exact)."""
    from keras import layers

    return layers.Add(name=name)([a, layers.Rescaling(-1.0, name=f"{name}_negate")(b)])


def rewrite_subtract(operation, args: list):
    """The ``Subtract`` merge layer -> :func:`subtract`."""
    a, b = args[0]
    return subtract(a, b, operation.name)


def channel_affine(x, scale: np.ndarray, offset: np.ndarray, name: str):
    """Return ``x * scale + offset`` per channel (last axis) as an exact BatchNormalization."""
    from keras import layers

    channels = int(x.shape[-1])
    norm = layers.BatchNormalization(axis=-1, epsilon=0.0, name=name)
    y = norm(x)
    ones, zeros = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    norm.set_weights([np.broadcast_to(scale, channels).astype(np.float32),
                      np.broadcast_to(offset, channels).astype(np.float32), zeros, ones])
    return y


def rewrite_normalization(operation, args: list):
    """``(x - mean) / max(sqrt(var), 1e-7)`` -> BatchNormalization without scale/centre."""
    from keras import layers

    x = args[0]
    channels = int(x.shape[-1])
    mean = np.asarray(operation.mean, np.float32).reshape(-1)
    variance = np.asarray(operation.variance, np.float32).reshape(-1)
    last_axis = tuple(operation.axis) in ((-1,), (len(x.shape) - 1,))
    if operation.invert or mean.size not in (1, channels) or (mean.size > 1 and not last_axis):
        raise unsupported(operation, "normalises over an axis other than the channels")
    norm = layers.BatchNormalization(axis=-1, epsilon=0.0, center=False, scale=False,
                                     name=operation.name)
    y = norm(x)
    floor = np.float32(1e-7) ** 2  # Keras divides by max(sqrt(variance), epsilon())
    norm.set_weights([np.broadcast_to(mean, channels).astype(np.float32),
                      np.maximum(np.broadcast_to(variance, channels), floor).astype(np.float32)])
    return y


def rewrite_rescaling(operation, args: list):
    """A Rescaling with per-channel scale or offset (EfficientNet with ImageNet weights) ->
    BatchNormalization; a scalar one is left alone."""
    scale = np.asarray(operation.scale, np.float32).reshape(-1)
    offset = np.asarray(operation.offset, np.float32).reshape(-1)
    if scale.size == 1 and offset.size == 1:
        return None
    channels = int(args[0].shape[-1])
    if {scale.size, offset.size} - {1, channels}:
        raise unsupported(operation, "rescales with a non per-channel shape")
    return channel_affine(args[0], scale, offset, operation.name)


def rewrite_keepdims_pooling(operation, args: list):
    """Global pooling with ``keepdims=True`` -> the pooling, then a Reshape back to rank."""
    from keras import layers

    if not operation.keepdims:
        return None
    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise unsupported(operation, "keeps dims in channels_first")
    x = args[0]
    pooled = type(operation)(name=f"{operation.name}_pool")(x)
    ones = (1,) * (len(x.shape) - 2)
    return layers.Reshape((*ones, int(x.shape[-1])), name=operation.name)(pooled)


def rewrite_grouped_conv(operation, args: list):
    """Grouped Conv2D -> DepthwiseConv2D (a group per input channel) or a block-diagonal Conv2D."""
    from keras import layers

    groups = operation.groups
    if groups == 1:
        return None
    x = args[0]
    act = activation_name(operation)
    cin, filters = int(x.shape[-1]), operation.filters
    kernel = np.asarray(operation.kernel)
    weights = [np.asarray(operation.bias)] if operation.use_bias else []
    conv_name = operation.name if act == "linear" else f"{operation.name}_linear"
    common = dict(kernel_size=operation.kernel_size, strides=operation.strides,
                  padding=operation.padding, dilation_rate=operation.dilation_rate,
                  use_bias=operation.use_bias, name=conv_name)
    if groups == cin:
        conv = layers.DepthwiseConv2D(depth_multiplier=filters // cin, **common)
        weights.insert(0, kernel.reshape(*kernel.shape[:2], cin, filters // cin))
    else:
        conv = layers.Conv2D(filters, **common)
        dense = np.zeros((*kernel.shape[:2], cin, filters), np.float32)
        per_in, per_out = cin // groups, filters // groups
        for g in range(groups):
            dense[:, :, g * per_in:(g + 1) * per_in, g * per_out:(g + 1) * per_out] = \
                kernel[:, :, :, g * per_out:(g + 1) * per_out]
        weights.insert(0, dense)
    y = conv(x)
    conv.set_weights(weights)
    if act == "linear":
        return y
    if act in TFJS_ACTIVATIONS:
        return layers.Activation(act, name=operation.name)(y)
    if act in REWRITTEN_ACTIVATIONS:
        return activation_layers(y, act, operation.name)
    raise unsupported(operation, f"has activation {act!r}")


def rewrite_layer_scale(operation, args: list):
    """ConvNeXt's LayerScale (``x * gamma`` per channel) -> a 1x1 DepthwiseConv2D."""
    from keras import layers

    x = args[0]
    if len(x.shape) != 4:
        raise unsupported(operation, "scales a tensor that is not an image")
    gamma = np.asarray(operation.gamma, np.float32)
    conv = layers.DepthwiseConv2D(1, use_bias=False, name=operation.name)
    y = conv(x)
    conv.set_weights([gamma.reshape(1, 1, -1, 1)])
    return y


def rewrite_custom_scale(operation, args: list):
    """InceptionResNetV2's CustomScaleLayer (``a + b * scale``) -> Rescaling + Add."""
    from keras import layers

    a, b = args[0]
    scaled = layers.Rescaling(float(operation.scale), name=f"{operation.name}_scale")(b)
    return layers.Add(name=operation.name)([a, scaled])


def rewrite_center_crop(operation, args: list):
    """CenterCrop of a static image larger than the target -> Cropping2D with Keras' offsets."""
    from keras import layers

    x = args[0]
    height, width = x.shape[1], x.shape[2]
    if (operation.data_format != "channels_last" or height is None or width is None
            or height < operation.height or width < operation.width):
        raise unsupported(operation, "crops an image smaller than its target or of unknown size")
    top, left = (height - operation.height) // 2, (width - operation.width) // 2
    return layers.Cropping2D(((top, height - operation.height - top),
                              (left, width - operation.width - left)), name=operation.name)(x)


_RESIZE_CLASS = None


def resize_layer_class():
    """Return the Keras twin of the SDK's ``BrowserMLResize`` TF.js layer (made once, lazily, so
    importing this module does not start Keras): TensorFlow's ``tf.image.resize`` as Keras 3's
    ``Resizing`` and ``UpSampling2D`` call it (half-pixel centres, no antialias)."""
    global _RESIZE_CLASS
    if _RESIZE_CLASS is None:
        import keras

        class BrowserMLResize(keras.layers.Layer):
            def __init__(self, height: int, width: int, interpolation: str = "bilinear",
                         **kwargs):
                super().__init__(**kwargs)
                self.height, self.width, self.interpolation = height, width, interpolation

            def call(self, x):
                return keras.ops.image.resize(x, (self.height, self.width),
                                              interpolation=self.interpolation)

            def compute_output_shape(self, shape):
                return (shape[0], self.height, self.width, shape[3])

            def get_config(self):
                return {**super().get_config(), "height": self.height, "width": self.width,
                        "interpolation": self.interpolation}

        _RESIZE_CLASS = BrowserMLResize
    return _RESIZE_CLASS


def rewrite_resizing(operation, args: list):
    """Keras ``Resizing`` (bilinear or nearest, no crop/pad to aspect ratio) -> BrowserMLResize."""
    if (operation.interpolation not in ("bilinear", "nearest") or operation.crop_to_aspect_ratio
            or operation.pad_to_aspect_ratio or operation.data_format != "channels_last"
            or getattr(operation, "antialias", False)):
        raise unsupported(operation, "resizes with an option other than plain bilinear/nearest")
    return resize_layer_class()(operation.height, operation.width, operation.interpolation,
                                name=operation.name)(args[0])


def rewrite_upsampling(operation, args: list):
    """Bilinear ``UpSampling2D`` (TF.js ignores the interpolation) -> BrowserMLResize; nearest
    is left to tfjs-layers' own UpSampling2D."""
    if operation.interpolation == "nearest":
        return None
    x = args[0]
    if (operation.interpolation != "bilinear" or operation.data_format != "channels_last"
            or x.shape[1] is None or x.shape[2] is None):
        raise unsupported(operation, f"upsamples with {operation.interpolation} interpolation")
    rows, cols = operation.size
    return resize_layer_class()(int(x.shape[1]) * rows, int(x.shape[2]) * cols, "bilinear",
                                name=operation.name)(x)


LAYER_REWRITES = {
    "Subtract": rewrite_subtract,
    "Resizing": rewrite_resizing,
    "UpSampling2D": rewrite_upsampling,
    "Normalization": rewrite_normalization,
    "Rescaling": rewrite_rescaling,
    "Conv2D": rewrite_grouped_conv,
    "LayerScale": rewrite_layer_scale,
    "CustomScaleLayer": rewrite_custom_scale,
    "CenterCrop": rewrite_center_crop,
    **{name: rewrite_keepdims_pooling for name in KEEPDIMS_POOLING},
}
