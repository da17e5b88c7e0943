"""Where a conversion starts: a user's Keras model (a file, a SavedModel, a live ``keras.Model``)
or a ``browserml train`` run directory, with the images it is measured on.

Everything ``convert`` needs is read from the model itself: the input's height and width (square
or not) and channels, the number of classes. Labels come from the data folder or ``--labels``.
With data, test accuracy (on up to ``verify_samples`` test images) and int8 calibration (on
``calibration_samples`` training images) use a seeded split of it; without, every variant is
compared with Keras on seeded generated inputs and int8 (which needs real images to calibrate)
is skipped, with the reason in the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError, ModelError
from .settings import get_settings

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
GENERATED_SAMPLES = 32


@dataclass
class Source:
    """A model and the images it is measured on (in the model's own input range)."""

    model: Any
    labels: list[str]
    height: int
    width: int
    channels: int
    value_range: tuple[float, float]
    inputs: np.ndarray
    targets: np.ndarray | None
    calibration: np.ndarray | None
    origin: dict
    architecture: str | None = None
    keras_accuracy: float | None = None
    saved_model: bool = False

    @property
    def measured_on(self) -> str:
        """How the inputs were made, for the table: test images or generated inputs."""
        return "test images" if self.targets is not None else "generated inputs"


def read_source(model_or_path: Any, *, data: str | None = None, labels: list[str] | None = None,
                value_range: tuple[float, float] | None = None, seed: int | None = None
                ) -> Source:
    """Given a run directory, a ``.keras``/``.h5`` file, a SavedModel directory or a live Keras
    model (and optionally a dataset to measure on), return the :class:`Source`. Raises
    ModelError / DatasetError with one line saying what to do."""
    seed = get_settings().seed if seed is None else seed
    if not isinstance(model_or_path, (str, Path)):
        model, origin = model_or_path, {"model": None, "data": data, "seed": seed}
        saved = False
    else:
        path = Path(model_or_path)
        if path.is_dir() and not (path / "saved_model.pb").is_file():
            return run_source(path, value_range)
        model, saved = load_model(path)
        origin = {"model": str(path.resolve()), "data": data, "seed": seed}
    return model_source(model, origin, data, labels, value_range or (0.0, 255.0), seed, saved)


def run_source(run_dir: Path, value_range: tuple[float, float] | None) -> Source:
    """A ``browserml train`` run: its model, labels, held-out test images and calibration set."""
    from .train import read_run

    run = read_run(run_dir)
    model = run.load_model()
    height, width, channels = input_shape(model)
    return Source(model=model, labels=run.labels, height=height, width=width, channels=channels,
                  value_range=value_range or (0.0, 255.0), inputs=run.test_images,
                  targets=run.test_labels, calibration=run.calibration_images(),
                  origin={"run": str(run_dir.resolve())}, architecture=run.info.get("arch"),
                  keras_accuracy=run.metrics.get("test_accuracy"))


def load_model(path: Path) -> tuple[Any, bool]:
    """Load a ``.keras``/``.h5`` file or a SavedModel directory; return ``(model, is_saved_model)``.
    Keras' own refusals (unsafe Lambda, unknown custom layer) become one ModelError line."""
    # Refusals first, before Keras starts TensorFlow (and its logging).
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return saved_model_as_keras(path), True
    if not path.exists():
        raise ModelError(f"{path}: not found; give a .keras or .h5 file, a SavedModel folder or a "
                         "'browserml train' run directory")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelError(f"{path}: not a Keras model; give a .keras or .h5 file, a SavedModel "
                         "folder (with saved_model.pb) or a 'browserml train' run directory")
    import keras

    try:
        return keras.models.load_model(path, compile=False), False
    except Exception as exc:  # Keras raises ValueError/TypeError with multi-line messages
        raise ModelError(load_error(path, exc)) from None


def load_error(path: Path, exc: Exception) -> str:
    """Return the one-line reason Keras could not load ``path``, with the way out."""
    text = str(exc)
    if "Lambda" in text or "safe_mode" in text:
        return (f"{path}: holds a Lambda layer with Python code, which Keras loads only with "
                "safe_mode=False; if you trust the file, load it yourself "
                "(keras.models.load_model(path, safe_mode=False)) and pass the model to "
                "browserml.convert, or replace the Lambda with Keras layers")
    if "Could not locate" in text or "Unknown layer" in text or "custom_objects" in text:
        name = text.split("'")[1] if "'" in text else "a custom class"
        return (f"{path}: uses {name}, a class Keras does not know; decorate it with "
                "@keras.saving.register_keras_serializable() and import its module before "
                "converting, or load the model yourself and pass it to browserml.convert")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return (f"{path}: Keras could not load it ({first[:200]}); check that the file opens with "
            "keras.models.load_model")


def saved_model_as_keras(path: Path):
    """Wrap a SavedModel's serving signature in a Keras model (a graph, not Keras layers: only
    the TFLite variants can be made from it)."""
    import keras
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise ModelError(f"{path}: the SavedModel has no serving_default signature; export it "
                         "with model.export(path)")
    specs = list(signature.structured_input_signature[1].values())
    if len(specs) != 1 or specs[0].shape.rank != 4:
        raise ModelError(f"{path}: the SavedModel must take one image batch [N, H, W, C]")
    inputs = keras.Input(shape=tuple(specs[0].shape[1:]), name="pixels")
    outputs = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")(inputs)
    if isinstance(outputs, dict):
        outputs = next(iter(outputs.values()))
    return keras.Model(inputs, outputs, name=path.name)


def input_shape(model) -> tuple[int, int, int]:
    """Return the model's (height, width, channels), or raise ModelError saying what is needed."""
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise ModelError(f"model {model.name!r} must take one image input [N, H, W, C]; it takes "
                         f"{[tuple(t.shape) for t in model.inputs]}")
    _, height, width, channels = model.inputs[0].shape
    if height is None or width is None or channels not in (1, 3):
        raise ModelError(f"model {model.name!r} takes {tuple(model.inputs[0].shape)}: give it a "
                         "fixed input size and 1 or 3 channels (keras.Input(shape=(H, W, C)))")
    return int(height), int(width), int(channels)


def output_units(model) -> int:
    """Return the number of classes the model outputs."""
    shape = model.outputs[0].shape
    if len(model.outputs) != 1 or len(shape) != 2 or shape[-1] is None:
        raise ModelError(f"model {model.name!r} must output one [N, classes] tensor; it outputs "
                         f"{[tuple(t.shape) for t in model.outputs]}")
    return int(shape[-1])


def model_source(model, origin: dict, data: str | None, labels: list[str] | None,
                 value_range: tuple[float, float], seed: int, saved: bool) -> Source:
    """A Keras model with its measuring images: a seeded split of ``data``, or generated inputs."""
    height, width, channels = input_shape(model)
    classes = output_units(model)
    if labels is not None and len(labels) != classes:
        raise ModelError(f"--labels gives {len(labels)} names but the model outputs {classes} "
                         "classes; give one name per output unit")
    source = Source(model=model, labels=labels or [f"class {i}" for i in range(classes)],
                    height=height, width=width, channels=channels, value_range=value_range,
                    inputs=generated_inputs(height, width, channels, value_range, seed),
                    targets=None, calibration=None, origin=origin,
                    architecture=model.name, saved_model=saved)
    if data is not None:
        attach_data(source, data, labels, seed)
    return source


def generated_inputs(height: int, width: int, channels: int, value_range: tuple[float, float],
                     seed: int) -> np.ndarray:
    """Seeded smooth random images in the model's input range (uniform noise with a gradient, so
    a classifier's answers vary between them)."""
    rng = np.random.default_rng(seed)
    low, high = value_range
    noise = rng.uniform(0, 1, (GENERATED_SAMPLES, height, width, channels))
    ramp = np.linspace(0, 1, width)[None, None, :, None] * rng.uniform(0, 1, (
        GENERATED_SAMPLES, 1, 1, channels))
    return (low + (high - low) * (0.5 * noise + 0.5 * ramp)).astype(np.float32)


def attach_data(source: Source, data: str, labels: list[str] | None, seed: int) -> None:
    """Measure on ``data``: a seeded split's test images (accuracy) and training images (int8
    calibration), resized to the model's input and mapped to its value range."""
    from . import datasets

    settings = get_settings()
    loaded = datasets.load(data, input_size=source.height, seed=seed, channels=source.channels)
    if len(loaded.class_names) != len(source.labels):
        raise DatasetError(f"{data}: has {len(loaded.class_names)} classes but the model outputs "
                           f"{len(source.labels)}; give data with one folder per output unit")
    splits = datasets.split(loaded, seed)
    test = splits.test.subset(np.arange(min(len(splits.test), settings.verify_samples)))
    source.labels = labels or loaded.class_names
    source.inputs = to_model_range(resize(test.images, source), source.value_range)
    source.targets = test.labels
    source.calibration = to_model_range(
        resize(splits.train.images[:settings.calibration_samples], source), source.value_range)


def resize(images: np.ndarray, source: Source) -> np.ndarray:
    """Resize square dataset images to a non-square model input (bilinear); others pass."""
    if images.shape[1:3] == (source.height, source.width):
        return images
    import tensorflow as tf

    resized = tf.image.resize(images.astype(np.float32), (source.height, source.width)).numpy()
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def to_model_range(pixels: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Map uint8 pixels to the model's input range, as the SDK does (``x * scale + offset``)."""
    low, high = value_range
    if (low, high) == (0.0, 255.0):
        return pixels
    return (pixels.astype(np.float32) * ((high - low) / 255.0) + low).astype(np.float32)

