"""Pretrained backbones: keras.applications image families, and where their weights come from.

A backbone is a keras.applications model without its top (``include_top=False``): pixels in, a
feature map out. Its weights come from one of three places:

* ``none``: random initialisation (training from scratch);
* ``imagenet``: Keras's own download cache (``$KERAS_HOME/models``, default ``~/.keras/models``).
  Offline, a missing file is one line naming the file, its URL and where to put it; Keras is
  never asked to download;
* a path: a ``.weights.h5`` (Keras 3 weights of this backbone), a legacy ``.h5`` (Keras's own
  imagenet files are this: weights by layer name), a full ``.keras`` / ``.h5`` model, or a TF.js
  layers ``model.json`` (read back by :mod:`browserml.tfjs.reader`). Full models give their
  weights by layer name and shape; their own top is ignored.

Each family carries its own input preprocessing, which the model applies to raw 0-255 pixels as
its first layer (see :mod:`browserml.architectures`), so browsers feed plain pixels.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FormatError, ModelError

# (scale, offset): the backbone sees ``pixels * scale + offset``.
INPUT_RANGES = {"-1,1": (1.0 / 127.5, -1.0), "0,1": (1.0 / 255.0, 0.0), "0,255": (1.0, 0.0)}


@dataclass(frozen=True)
class Family:
    """One keras.applications family: its constructor, input range and imagenet file."""

    application: str  # keras.applications attribute
    input_range: str  # a key of INPUT_RANGES, or "caffe" (BGR, ImageNet mean subtracted)
    url_dir: str  # where Keras downloads the no-top imagenet weights from
    kwargs: tuple = ()  # extra constructor arguments

    def imagenet_file(self, input_size: int) -> str:
        """Return the file name keras.applications loads ``weights="imagenet"`` from."""
        if self.application == "MobileNetV2":
            rows = input_size if input_size in (96, 128, 160, 192, 224) else 224
            return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
        if self.application.startswith("MobileNetV3"):
            kind = self.application.removeprefix("MobileNetV3").lower()
            return f"weights_mobilenet_v3_{kind}_224_1.0_float_no_top_v2.h5"
        if self.application == "EfficientNetB0":
            return "efficientnetb0_notop.h5"
        return "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"
FAMILIES = {
    "mobilenetv2": Family("MobileNetV2", "-1,1", KERAS_APPS + "mobilenet_v2/"),
    "mobilenetv3small": Family("MobileNetV3Small", "-1,1", KERAS_APPS + "mobilenet_v3/",
                               (("include_preprocessing", False),)),
    "mobilenetv3large": Family("MobileNetV3Large", "-1,1", KERAS_APPS + "mobilenet_v3/",
                               (("include_preprocessing", False),)),
    # EfficientNet rescales and normalises inside itself: it takes 0-255 pixels as they are.
    "efficientnetb0": Family("EfficientNetB0", "0,255",
                             "https://storage.googleapis.com/keras-applications/"),
    "resnet50": Family("ResNet50", "caffe", KERAS_APPS + "resnet/"),
}
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
ARCHITECTURES = ("cnn", *FAMILIES)
# Architectures the original from-scratch path builds (architectures.build); every architecture,
# these included, can also be built as a backbone + head (architectures.transfer).
SCRATCH_ARCHITECTURES = ("cnn", "mobilenetv2")
# keras.applications' own floor for these families (imagenet_utils.obtain_input_shape's
# min_size); checked here too so the refusal comes before TensorFlow starts.
MIN_INPUT_SIZE = 32


def check_arch(arch: str, input_size: int) -> None:
    """Raise ModelError for an unknown architecture or an input size its backbone refuses."""
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    if arch != "cnn" and input_size < MIN_INPUT_SIZE:
        raise ModelError(f"{arch} refuses input ({input_size}, {input_size}, 3): Keras's {arch} "
                         f"needs at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}; choose another "
                         "--input-size (pretrained weights fit best at 224)")


def keras_cache_dir() -> Path:
    """Return where keras.utils.get_file keeps downloads: ``$KERAS_HOME/models`` or
    ``~/.keras/models`` (Keras's own rule, read from the same environment)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def imagenet_weights_file(arch: str, input_size: int) -> Path:
    """Return the cached imagenet file for ``arch``, or raise ModelError saying which file to put
    where (BrowserML runs offline: Keras is never asked to download)."""
    family = FAMILIES[arch]
    name = family.imagenet_file(input_size)
    path = keras_cache_dir() / name
    if not path.is_file():
        raise ModelError(f"imagenet weights for {arch} are not in Keras's cache and BrowserML does "
                         f"not download: put {family.url_dir}{name} at {path}")
    return path


def application(arch: str, input_tensor, weights: str | None):
    """Return keras.applications' ``arch`` without top, built on ``input_tensor`` (so its layers
    join the caller's graph flat), or raise ModelError when it refuses the input size."""
    import keras

    family = FAMILIES[arch]
    constructor = getattr(keras.applications, family.application)
    try:
        return constructor(include_top=False, weights=weights, input_tensor=input_tensor,
                           input_shape=tuple(input_tensor.shape[1:]),
                           **dict(family.kwargs))
    except ValueError as exc:
        size = tuple(input_tensor.shape[1:])
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{arch} refuses input {size}: {first}; choose another --input-size "
                         "(pretrained weights fit best at 224)") from None


def weighted_layers(model) -> list:
    """Return the model's layers that hold weights, nested models' layers included, in order."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.weights:
            out.extend(weighted_layers(layer))
        elif layer.weights:
            out.append(layer)
    return out


def copy_by_order(source, target) -> None:
    """Copy weights between two builds of the same architecture (same layer order)."""
    for src, dst in zip(weighted_layers(source), weighted_layers(target), strict=True):
        dst.set_weights(src.get_weights())


def copy_by_name(source, target, where: str, arch: str) -> None:
    """Copy weights from a full model ``source`` into ``target`` by layer name and shape, or raise
    ModelError naming the first layer that does not fit: the file is another architecture."""
    by_name = {layer.name: layer for layer in weighted_layers(source)}
    for layer in weighted_layers(target):
        found = by_name.get(layer.name)
        want = [tuple(w.shape) for w in layer.weights]
        have = [tuple(w.shape) for w in found.weights] if found is not None else None
        if have != want:
            detail = "has no layer of that name" if found is None else f"has shapes {have}"
            raise ModelError(f"{where}: not {arch} weights: {arch} layer {layer.name!r} needs "
                             f"shapes {want}, the file {detail}; pass the --arch it was "
                             "trained as")
        layer.set_weights(found.get_weights())


def load_source_model(path: Path):
    """Return the full Keras model stored at ``path`` (``.keras``, full ``.h5``, TF.js
    ``model.json``), or None for a weights-only ``.h5``."""
    import keras

    if path.name.endswith(".json") or path.is_dir():
        from .tfjs.reader import read_keras_model

        return read_keras_model(path)
    if path.suffix == ".h5":
        import h5py

        with h5py.File(path, "r") as handle:
            if "model_config" not in handle.attrs:
                return None  # weights only
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for unreadable files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot be read as a Keras model ({first[:200]})") from None


def load_weights_into(backbone, arch: str, weights: str, input_size: int) -> Path | None:
    """Fill ``backbone`` (built with random weights) from ``weights`` (``none``, ``imagenet`` or
    a path) and return the file the weights came from (None for ``none``)."""
    if weights == "none":
        return None
    if weights == "imagenet":
        path = imagenet_weights_file(arch, input_size)
        load_h5_weights(backbone, path, arch, input_size)
        return path
    path = Path(weights)
    if not path.exists():
        raise ModelError(f"--weights {weights}: no such file; give a .keras, .h5, .weights.h5 "
                         "or TF.js model.json, or 'imagenet'")
    if path.is_dir():
        path = path / "model.json"
    if not (path.name.endswith((".keras", ".h5", ".json"))):
        raise ModelError(f"--weights {weights}: unknown format; give a .keras, .h5, "
                         ".weights.h5 or TF.js model.json")
    if path.name.endswith(".weights.h5"):
        load_h5_weights(backbone, path, arch, input_size)
        return path
    try:
        source = load_source_model(path)
    except FormatError as exc:
        raise ModelError(f"--weights: {exc}") from None
    if source is None:
        load_h5_weights(backbone, path, arch, input_size)
    else:
        copy_by_name(source, backbone, str(path), arch)
    return path


def load_h5_weights(backbone, path: Path, arch: str, input_size: int) -> None:
    """Load a weights-only file into ``backbone`` through a standalone build of the family (the
    files name layers as keras.applications builds them), or raise ModelError when the file is
    for another architecture."""
    import keras

    standalone = application(arch, keras.Input(shape=(input_size, input_size, 3)), None)
    try:
        standalone.load_weights(path)
    except Exception as exc:  # Keras: ValueError, KeyError, OSError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not {arch} weights ({first[:160]}); pass the --arch it was "
                         "saved from") from None
    copy_by_order(standalone, backbone)


def weights_sha256(path: Path | None) -> str | None:
    """Return the sha256 of a weights file; for a TF.js ``model.json``, of the model.json
    followed by its shards in manifest order (all the bytes the weights came from)."""
    if path is None:
        return None
    digest = hashlib.sha256(path.read_bytes())
    if path.name.endswith(".json"):
        import json

        document = json.loads(path.read_text())
        for group in document.get("weightsManifest", []):
            for shard in group["paths"]:
                digest.update((path.parent / shard).read_bytes())
    return digest.hexdigest()


def preprocessing(arch: str, input_range: str | None, channels: int):
    """Return the layers that map raw 0-255 pixels to what the backbone expects: a Rescaling for
    the ``[-1, 1]`` / ``[0, 1]`` families, a fixed 1x1 convolution for ResNet's caffe style (RGB to
    BGR, ImageNet mean subtracted), none for EfficientNet. ``input_range`` overrides the family's
    own (a backbone read from a TF.js model may have been trained on another range)."""
    from keras import layers

    chosen = input_range or FAMILIES[arch].input_range
    if chosen == "caffe":
        return [caffe_layer(channels)]
    if chosen not in INPUT_RANGES:
        raise ModelError(f"--input-range {chosen}: use one of {', '.join(INPUT_RANGES)}")
    scale, offset = INPUT_RANGES[chosen]
    if (scale, offset) == (1.0, 0.0):
        return []
    return [layers.Rescaling(scale, offset=offset, name="preprocess")]


def caffe_layer(channels: int):
    """Return a frozen 1x1 Conv2D that will compute ``bgr - mean`` once :func:`init_caffe` has set
    its weights: every engine runs a convolution, whereas per-channel Rescaling is not in TF.js
    layers."""
    from keras import layers

    return layers.Conv2D(3, 1, name="preprocess", trainable=False)


def init_caffe(layer, channels: int) -> None:
    """Set a built :func:`caffe_layer`'s kernel (RGB to BGR) and bias (minus the ImageNet mean)."""
    kernel = np.zeros((1, 1, channels, 3), dtype=np.float32)
    for out, src in enumerate((2, 1, 0)):
        kernel[0, 0, min(src, channels - 1), out] = 1.0
    layer.set_weights([kernel, -np.asarray(IMAGENET_MEAN_BGR, dtype=np.float32)])
