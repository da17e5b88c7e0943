"""Model architectures, with preprocessing inside the model.

The first layer rescales raw 0-255 pixels, so the browser feeds exactly the pixels it decodes and
no client can get normalisation wrong. ``cnn`` is the reference team's custom CNN exactly as
written (its flatten head makes it ~25.8M parameters at 224x224, not the 2.1M their write-up
quotes); ``head="gap"`` swaps flatten for global average pooling, the compact option.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

from . import backbones
from .augmentation import augmentation_layers
from .backbones import ARCHITECTURES, SCRATCH_ARCHITECTURES  # noqa: F401 - re-exported
from .errors import ModelError

BATCHNORM_MOMENTUM = 0.9  # for MobileNetV2 trained from scratch: see mobilenetv2()


def cnn(input_size: int, num_classes: int, channels: int = 3, head: str = "flatten",
        seed: int = 1234) -> keras.Model:
    """Return the reference CNN: 3 x (conv 3x3 same + relu + maxpool 2) at 32/64/128 filters, then
    flatten (or GAP) -> dropout 0.5 -> dense 256 relu -> dropout 0.5 -> dense softmax."""
    if head not in ("flatten", "gap"):
        raise ModelError(f"unknown head {head!r}: use 'flatten' or 'gap'")
    init = keras.initializers.GlorotUniform(seed=seed)
    model = keras.Sequential(name="cnn")
    model.add(keras.Input(shape=(input_size, input_size, channels), name="pixels"))
    model.add(layers.Rescaling(1.0 / 255, name="rescale"))
    for filters in (32, 64, 128):
        model.add(layers.Conv2D(filters, 3, padding="same", activation="relu",
                                kernel_initializer=init, name=f"conv{filters}"))
        model.add(layers.MaxPooling2D(2, name=f"pool{filters}"))
    model.add(layers.Flatten(name="flatten") if head == "flatten"
              else layers.GlobalAveragePooling2D(name="gap"))
    model.add(layers.Dropout(0.5, seed=seed, name="dropout1"))
    model.add(layers.Dense(256, activation="relu", kernel_initializer=init, name="dense256"))
    model.add(layers.Dropout(0.5, seed=seed, name="dropout2"))
    model.add(layers.Dense(num_classes, activation="softmax", kernel_initializer=init,
                           name="classes"))
    return model


def mobilenetv2(input_size: int, num_classes: int, channels: int = 3, alpha: float = 1.0,
                seed: int = 1234) -> keras.Model:
    """Return Keras' MobileNetV2 (random init, ``weights=None``) with a [-1, 1] rescale in front.

    Built on the rescaled tensor (``input_tensor``) so the result is one flat functional model,
    which is what the TF.js layers format can describe.
    """
    if channels != 3:
        raise ModelError("mobilenetv2 needs 3 channels; use --channels 3")
    keras.utils.set_random_seed(seed)
    pixels = keras.Input(shape=(input_size, input_size, channels), name="pixels")
    scaled = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(pixels)
    model = keras.applications.MobileNetV2(
        input_tensor=scaled, alpha=alpha, weights=None, classes=num_classes,
        classifier_activation="softmax",
    )
    # Keras' MobileNetV2 keeps BatchNorm moving statistics with momentum 0.999, tuned for
    # ImageNet's hundreds of thousands of steps. Trained from scratch for a few hundred steps they
    # never settle, and the model scores chance at inference while training accuracy climbs
    # (measured: 12.5 % on 8 shapes classes after 320 steps). 0.9 settles in tens of steps.
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BATCHNORM_MOMENTUM
    return model


def build(arch: str, *, input_size: int, num_classes: int, channels: int = 3,
          alpha: float = 1.0, head: str = "flatten", seed: int = 1234) -> keras.Model:
    """Given an architecture name and its parameters, return the uncompiled model."""
    if arch == "cnn":
        return cnn(input_size, num_classes, channels, head=head, seed=seed)
    if arch == "mobilenetv2":
        return mobilenetv2(input_size, num_classes, channels, alpha=alpha, seed=seed)
    raise ModelError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")


# ---------------------------------------------------------------- backbone + head (fine-tuning)


@dataclass
class TransferModel:
    """A backbone + head classifier and what two-phase training needs to know about it.

    ``model`` (pixels -> preprocessing -> backbone -> pooling -> dropout -> dense) is what the run
    saves and browsers run; ``trainer`` puts the augmentation in front of it for ``fit`` only, so
    training-only layers never reach an exported model.
    """

    model: keras.Model
    trainer: keras.Model
    backbone_layers: list
    weights_file: Path | None


def cnn_backbone(tensor, seed: int) -> list:
    """Apply the reference CNN's three conv blocks to ``tensor``; return the layers in order."""
    init = keras.initializers.GlorotUniform(seed=seed)
    stack = []
    for filters in (32, 64, 128):
        stack.append(layers.Conv2D(filters, 3, padding="same", activation="relu",
                                   kernel_initializer=init, name=f"conv{filters}"))
        stack.append(layers.MaxPooling2D(2, name=f"pool{filters}"))
    return stack


def transfer(arch: str, *, input_size: int, num_classes: int, channels: int = 3,
             weights: str = "none", input_range: str | None = None,
             augment: tuple[str, ...] = (), dropout: float = 0.2, seed: int = 1234
             ) -> TransferModel:
    """Return ``arch`` as backbone + head with the backbone's weights from ``weights``
    (``none``, ``imagenet`` or a path: see :mod:`browserml.backbones`).

    The backbone is built on the preprocessed tensor, so the saved model is one flat graph (what
    TF.js layers and the TFLite converter take). From scratch, BatchNorm momentum is 0.9 for the
    reason :func:`mobilenetv2` gives.
    """
    backbones.check_arch(arch, input_size)
    if arch != "cnn" and channels != 3:
        raise ModelError(f"{arch} needs 3 channels; use --channels 3")
    keras.utils.set_random_seed(seed)
    pixels = keras.Input(shape=(input_size, input_size, channels), name="pixels")
    if arch == "cnn":
        backbone_layers, features = cnn_features(pixels, input_range, seed)
        weights_file = load_cnn_weights(backbone_layers, weights)
    else:
        prefix = backbones.preprocessing(arch, input_range, channels)
        tensor = pixels
        for layer in prefix:
            tensor = layer(tensor)
        if prefix and prefix[0].name == "preprocess" and isinstance(prefix[0], layers.Conv2D):
            backbones.init_caffe(prefix[0], channels)
        app = backbones.application(arch, tensor, None)
        backbone_layers = [layer for layer in app.layers
                           if layer not in prefix and not isinstance(layer, layers.InputLayer)]
        features = app.output
        weights_file = backbones.load_weights_into(app, arch, weights, input_size)
    if weights == "none":
        for layer in backbone_layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = BATCHNORM_MOMENTUM
    pooled = layers.GlobalAveragePooling2D(name="pool")(features)
    dropped = layers.Dropout(dropout, seed=seed, name="head_dropout")(pooled)
    init = keras.initializers.GlorotUniform(seed=seed)
    probs = layers.Dense(num_classes, activation="softmax", kernel_initializer=init,
                         name="classes")(dropped)
    model = keras.Model(pixels, probs, name=f"{arch}_transfer")
    extra = augmentation_layers(augment, seed)
    trainer = model if not extra else keras.Sequential(
        [keras.Input(shape=(input_size, input_size, channels), name="raw"), *extra, model],
        name="trainer")
    return TransferModel(model, trainer, backbone_layers, weights_file)


def cnn_features(pixels, input_range: str | None, seed: int):
    """Return ``(backbone layers, feature tensor)``: the CNN's conv stack after its rescale."""
    scale, offset = backbones.INPUT_RANGES.get(input_range or "0,1", (None, None))
    if scale is None:
        raise ModelError(f"--input-range {input_range}: use one of "
                         f"{', '.join(backbones.INPUT_RANGES)}")
    tensor = layers.Rescaling(scale, offset=offset, name="rescale")(pixels)
    stack = cnn_backbone(tensor, seed)
    for layer in stack:
        tensor = layer(tensor)
    return stack, tensor


def load_cnn_weights(stack: list, weights: str) -> Path | None:
    """Fill the CNN's conv layers from a saved model by layer name (``imagenet`` has none)."""
    if weights == "none":
        return None
    if weights == "imagenet":
        raise ModelError("cnn has no imagenet weights; pick a keras.applications --arch "
                         "(mobilenetv2, ...) or --weights PATH of a trained cnn")
    path = Path(weights)
    if not path.exists():
        raise ModelError(f"--weights {weights}: no such file; give a .keras, .h5, .weights.h5 "
                         "or TF.js model.json, or 'imagenet'")
    source = backbones.load_source_model(path if path.is_file() else path / "model.json")
    if source is None:
        raise ModelError(f"{path}: a weights-only file; for cnn give the full model "
                         "(.keras, .h5 or model.json)")
    backbones.copy_by_name(source, _LayerList(stack), str(path), "cnn")
    return path


class _LayerList:
    """Adapter: a plain list of layers seen as a model's ``layers`` by copy_by_name."""

    def __init__(self, stack: list) -> None:
        self.layers = stack
