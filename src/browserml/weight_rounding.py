"""Error-compensating rounding of a Keras model's weights onto TFLite's int8 grids.

TFLite's int8 rounds every weight to the nearest step of its output channel's symmetric grid
(scale = max |w| / 127, the BatchNormalization that follows a convolution folded in first). Each
rounding error is small, but they are independent and add up through the layers: on the
fine-tuned MobileNetV2 of BENCHMARKS.md (issue 16 follow-up), nearest rounding of the weights
alone, activations left in float, flipped 14 % of the answers.

:func:`rounded_weights` rounds each layer the GPTQ way instead (Frantar et al., 2022, "GPTQ:
Accurate post-training quantization for generative pre-trained transformers", after Optimal
Brain Quantization): one input of the layer at a time, spreading that input's rounding error over
the inputs not rounded yet so that the layer's outputs on the calibration images move least. It
needs only ``H = X^T X`` of each layer's inputs (``X``: the inputs the float model feeds the
layer on those images), so it runs in seconds per layer, no training. The weights it writes
already lie on the grid TFLite will compute (each channel's largest weight is kept, so TFLite
finds the same scale), so TFLite's own rounding leaves them as they are.

Handled: ``Conv2D`` (one group, no dilation), ``DepthwiseConv2D`` (no dilation) and ``Dense``
layers, each with a following ``BatchNormalization`` folded when it is the layer's only consumer
and the layer has no activation of its own (as TFLite folds it). Other layers keep their weights.
The caller measures the int8 model built from the rounded weights and keeps it only when it is
better (:func:`browserml.convert.int8_precision`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

# Symmetric int8 weight grid TFLite uses: -127..127 (never -128).
LEVELS = 127
# Added to H's diagonal as a share of its mean diagonal: keeps H invertible when the images do
# not excite every input (GPTQ's "percent damp").
DAMPING = 0.01
# Images per forward pass while H is gathered (memory: every target layer's input at once).
BATCH = 4


@dataclass
class Target:
    """A layer whose kernel is rounded, and the per-output-channel factor TFLite folds into it
    (``BatchNormalization``'s ``gamma / sqrt(var + eps)``; ones when none follows)."""

    layer: object
    fold: np.ndarray


@dataclass
class Rounding:
    """What :func:`rounded_weights` did: ``layers`` rounded, on ``samples`` images."""

    layers: int
    samples: int


def node_of(layer):
    """The layer's call in the model being converted: the last one (the inference model calls
    the user's layer objects again, after the user's own model did)."""
    return layer._inbound_nodes[-1]


def targets(model) -> list[Target]:
    """The layers whose kernels :func:`rounded_weights` rounds, with their folded factors."""
    consumers: dict[int, list] = {}
    for layer in model.layers:
        if layer._inbound_nodes:
            for tensor in node_of(layer).input_tensors:
                consumers.setdefault(id(tensor), []).append(layer)
    found = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "DepthwiseConv2D", "Dense") or not layer._inbound_nodes:
            continue
        if kind != "Dense" and (tuple(layer.dilation_rate) != (1, 1)
                                or getattr(layer, "groups", 1) != 1
                                or layer.data_format != "channels_last"):
            continue
        if kind == "Dense" and len(node_of(layer).input_tensors[0].shape) != 2:
            continue
        shape = tuple(layer.kernel.shape)
        channels = shape[2] * shape[3] if kind == "DepthwiseConv2D" else shape[-1]
        fold = np.ones(channels, np.float32)
        after = consumers.get(id(node_of(layer).output_tensors[0]), [])
        linear = getattr(layer.activation, "__name__", "") == "linear"
        if (len(after) == 1 and type(after[0]).__name__ == "BatchNormalization" and linear
                and after[0].axis in (-1, len(node_of(layer).output_tensors[0].shape) - 1)):
            norm = after[0]
            gamma = norm.gamma.numpy() if norm.scale else np.ones(channels, np.float32)
            fold = (gamma / np.sqrt(norm.moving_variance.numpy() + norm.epsilon)).astype(np.float32)
        found.append(Target(layer, fold))
    return found


def hessians(model, found: list[Target], images: np.ndarray,
             status: Callable[[str], None] = lambda s: None) -> list[np.ndarray]:
    """``X^T X`` of each target's inputs over ``images`` (float64): ``(n, n)`` with ``n`` the
    kernel's inputs per output (patch size x input channels), or ``(channels, k, k)`` per channel
    for a depthwise convolution (``k`` = its patch size)."""
    import keras
    import tensorflow as tf

    if not found:
        return []
    probe = keras.Model(model.inputs, [node_of(t.layer).input_tensors[0] for t in found])
    sums: list = [0.0] * len(found)
    for start in range(0, len(images), BATCH):
        status(f"int8 rounding: inputs {start}/{len(images)}")
        outputs = probe(images[start:start + BATCH].astype(np.float32), training=False)
        if len(found) == 1:
            outputs = [outputs]
        for index, (target, inputs) in enumerate(zip(found, outputs, strict=True)):
            sums[index] = sums[index] + layer_hessian(target.layer, inputs, tf).numpy().astype(
                np.float64)
    return sums


def layer_hessian(layer, inputs, tf):
    """One batch's ``X^T X`` for ``layer`` (see :func:`hessians`)."""
    kind = type(layer).__name__
    channels = inputs.shape[-1]
    if kind == "Dense":
        rows = tf.reshape(inputs, [-1, channels])
        return tf.matmul(rows, rows, transpose_a=True)
    height, width = layer.kernel_size
    strides = [1, *layer.strides, 1]
    patches = tf.image.extract_patches(inputs, [1, height, width, 1], strides, [1, 1, 1, 1],
                                       layer.padding.upper())
    if kind == "DepthwiseConv2D":
        patches = tf.reshape(patches, [-1, height * width, channels])
        return tf.einsum("nkc,nlc->ckl", patches, patches)
    rows = tf.reshape(patches, [-1, height * width * channels])
    return tf.matmul(rows, rows, transpose_a=True)


def round_rows(weights: np.ndarray, hessian: np.ndarray, damping: float = DAMPING) -> np.ndarray:
    """GPTQ rounding of ``weights`` (rows = output channels, already folded) onto each row's
    symmetric int8 grid (``max |w| / 127``), given ``hessian``: ``(n, n)`` shared by the rows or
    ``(rows, n, n)``. Returns the rounded (dequantized) rows; each row's largest weight is kept
    exactly, so TFLite computes the same scale. With a shared ``hessian`` the inputs are rounded
    most active first (GPTQ's "act order": the large errors are made early, while most inputs
    are still free to absorb them). Depthwise rows (one ``hessian`` each) keep their order: act
    order there moved Keras outputs less out of fold, but the int8 model built from it agreed
    less with float32 on the calibration images (98.1 % vs 99.4 %; BENCHMARKS.md)."""
    if hessian.ndim == 2:
        order = np.argsort(-np.diagonal(hessian), kind="stable")
        rounded = round_in_order(weights[:, order], hessian[np.ix_(order, order)], damping)
        return rounded[:, np.argsort(order)]
    return round_in_order(weights, hessian, damping)


def round_in_order(weights: np.ndarray, hessian: np.ndarray, damping: float) -> np.ndarray:
    """:func:`round_rows` with the inputs rounded in their given order."""
    work = weights.astype(np.float64).copy()
    rows, inputs = work.shape
    scale = np.abs(work).max(1) / LEVELS
    scale[scale == 0] = 1.0
    largest = np.abs(work).argmax(1)
    largest_value = work[np.arange(rows), largest].copy()
    upper = inverse_cholesky(hessian if hessian.ndim == 3 else hessian[None], damping)
    rounded = np.zeros_like(work)
    for column in range(inputs):
        step = upper[:, column, :]
        rounded[:, column] = np.clip(np.round(work[:, column] / scale), -LEVELS, LEVELS) * scale
        error = (work[:, column] - rounded[:, column]) / step[:, column]
        work[:, column + 1:] -= error[:, None] * step[:, column + 1:]
        later = largest > column
        work[later, largest[later]] = largest_value[later]
    return rounded


def inverse_cholesky(hessian: np.ndarray, damping: float) -> np.ndarray:
    """Upper Cholesky factor of ``(H + damping)^-1`` for each ``H`` in the stack (inputs no image
    excites get a unit diagonal, as GPTQ does)."""
    stack = hessian.copy()
    index = np.arange(stack.shape[-1])
    diagonal = np.diagonal(stack, axis1=1, axis2=2)
    stack[:, index, index] += damping * diagonal.mean(1, keepdims=True) + (diagonal == 0)
    lower = np.linalg.cholesky(np.linalg.inv(stack))
    return np.transpose(lower, (0, 2, 1))


def rounded_kernel(target: Target, hessian: np.ndarray) -> np.ndarray:
    """The target's kernel after GPTQ rounding of its folded form, unfolded again."""
    kernel = target.layer.kernel.numpy()
    if type(target.layer).__name__ == "DepthwiseConv2D":
        height, width, channels, multiplier = kernel.shape
        folded = kernel.reshape(height * width, channels * multiplier) * target.fold
        per_channel = np.repeat(hessian, multiplier, axis=0)
        rounded = round_rows(folded.T, per_channel).T / target.fold
        return rounded.reshape(kernel.shape).astype(np.float32)
    folded = kernel.reshape(-1, kernel.shape[-1]) * target.fold
    rounded = round_rows(folded.T, hessian).T / target.fold
    return rounded.reshape(kernel.shape).astype(np.float32)


@contextmanager
def rounded_weights(model, images: np.ndarray,
                    status: Callable[[str], None] = lambda s: None) -> Iterator[Rounding]:
    """Within the block, ``model``'s int8-able kernels hold GPTQ-rounded weights fitted on
    ``images`` (calibration images); the original weights are put back on exit, whatever
    happens (the model's layers are shared with the user's model)."""
    found = targets(model)
    originals = [target.layer.kernel.numpy() for target in found]
    try:
        for target, hessian in zip(found, hessians(model, found, images, status), strict=True):
            status(f"int8 rounding: {target.layer.name}")
            target.layer.kernel.assign(rounded_kernel(target, hessian))
        yield Rounding(layers=len(found), samples=len(images))
    finally:
        for target, kernel in zip(found, originals, strict=True):
            target.layer.kernel.assign(kernel)
