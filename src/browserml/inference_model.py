"""The inference model: a user's Keras model as one flat graph of the layers prediction uses.

Models arrive as users build them: a ``keras.applications`` base nested inside a Sequential or a
functional model, augmentation and dropout layers in front, ``x + c`` operations between layers.
Both export routes want something plainer. :func:`inference_model` rebuilds the model by calling
its own layer objects (so weights are shared, not copied) on fresh inputs, walking into nested
Sequential/Functional models so the result is one graph, and leaving out the layers that only
act while training (they are the identity at inference, which is all a browser runs).

The TF.js route also passes a ``rewrite`` hook (:mod:`browserml.tfjs.rewrite`) that replaces
layers tfjs-layers lacks with equivalent ones it has. :func:`check_same` then compares the rebuilt
model with the original in Keras, so a rewrite that changed the answers is caught here, in Python,
and never shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import FormatError, ModelError

# Layers that are the identity at inference (Keras only applies them while training).
TRAINING_ONLY = {
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization",
}
# Random* augmentation layers that do change the image at inference (RandomCrop center-crops and
# resizes), so they are kept.
RANDOM_KEPT_AT_INFERENCE = {"RandomCrop"}
# Largest difference (relative to the output's magnitude) between the rebuilt and the original
# model before we call the rebuild wrong.
SAME_TOLERANCE = 1e-4

Rewrite = Callable[[Any, list, dict], Any]


def is_training_only(operation) -> bool:
    """True for a layer Keras applies only while training (dropout, noise, augmentation)."""
    name = type(operation).__name__
    if name in TRAINING_ONLY:
        return True
    return name.startswith("Random") and name not in RANDOM_KEPT_AT_INFERENCE and is_keras_layer(
        operation)


def is_keras_layer(operation) -> bool:
    """True when the operation is one of Keras' own layers (not a user's subclass)."""
    return type(operation).__module__.startswith("keras.")


def is_graph_model(operation) -> bool:
    """True for a Sequential or Functional model, the kinds that can be flattened."""
    import keras

    return isinstance(operation, keras.Model) and type(operation).__name__ in (
        "Sequential", "Functional")


def inference_model(model, rewrite: Rewrite | None = None):
    """Given a Keras model, return the same computation as one flat functional model without its
    training-only layers. ``rewrite(operation, args, kwargs)`` may return outputs to use instead of
    calling the operation (or None to call it as is). Raises ModelError for a subclassed model."""
    import keras

    if not is_graph_model(model):
        raise ModelError(
            f"model {model.name!r} is a subclassed {type(model).__name__}; only Sequential and "
            "functional models can be converted: rebuild it with keras.Sequential or the "
            "functional API (keras.Model(inputs, outputs))")
    inputs = [keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=input_name(t, i))
              for i, t in enumerate(model.inputs)]
    outputs = flat_call(model, inputs if len(inputs) > 1 else inputs[0], rewrite)
    try:
        return keras.Model(inputs, outputs, name=model.name)
    except ValueError as exc:
        if "unique" in str(exc):
            raise ModelError(
                f"flattening {model.name!r} gives two layers the same name ({exc}); rename the "
                "nested model's layers so every layer name is unique") from None
        raise


def input_name(tensor, index: int) -> str:
    """Return a name for the rebuilt model's ``index``-th input (the original's, when it has one)."""
    history = getattr(tensor, "_keras_history", None)
    return history[0].name if history else f"input_{index}"


def flat_call(model, inputs, rewrite: Rewrite | None):
    """Call ``model``'s layers on ``inputs`` one by one (recursing into nested models); return its
    outputs."""
    if type(model).__name__ == "Sequential":
        x = inputs
        for layer in model.layers:
            x = apply(layer, [x], {}, rewrite)
        return x
    return model._run_through_graph(  # Keras' own graph walk; we only swap what each node calls
        inputs, operation_fn=lambda op: lambda *args, **kwargs: apply(op, list(args), kwargs,
                                                                       rewrite))


def apply(operation, args: list, kwargs: dict, rewrite: Rewrite | None):
    """Return ``operation``'s outputs on ``args`` in the flat graph: nested models are walked,
    training-only layers pass their input through, the rewrite hook may replace the rest."""
    kwargs = {k: v for k, v in kwargs.items() if k not in ("training", "mask")}
    if is_graph_model(operation):
        return flat_call(operation, args[0], rewrite)
    if is_training_only(operation):
        return args[0]
    if rewrite is not None:
        replaced = rewrite(operation, args, kwargs)
        if replaced is not None:
            return replaced
    return operation(*args, **kwargs)


def sample_inputs(model, count: int = 4, seed: int = 0) -> np.ndarray:
    """Return ``count`` seeded random images in the model's input shape, spread over 0..255 (the
    raw pixels browsers feed)."""
    shape = [count, *(int(d) for d in model.inputs[0].shape[1:])]
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


def max_difference(model, other, images: np.ndarray) -> float:
    """Return the largest absolute difference of the two models' outputs on ``images``, relative
    to the larger of 1 and the original output's magnitude."""
    want = np.asarray(model.predict(images, verbose=0))
    got = np.asarray(other.predict(images, verbose=0))
    if want.shape != got.shape:
        return float("inf")
    return float(np.abs(want - got).max() / max(1.0, float(np.abs(want).max())))


def check_same(model, rebuilt, what: str) -> None:
    """Raise FormatError when ``rebuilt`` does not compute what ``model`` does (within
    ``SAME_TOLERANCE``) on seeded random images: a rewrite must never change the answers."""
    diff = max_difference(model, rebuilt, sample_inputs(model))
    if not diff <= SAME_TOLERANCE:
        raise FormatError(f"the {what} of {model.name!r} differs from the model by {diff:.2e}; "
                          "please report this model so its layers can be translated")
