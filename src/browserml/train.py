"""Training: a dataset and an architecture in, a run directory out.

The run directory is the contract with ``convert``::

    runs/digits/
      model.keras     the trained Keras 3 model (preprocessing inside)
      labels.json     class names, index = output unit
      metrics.json    val/test accuracy, history, sample counts, skipped files
      run.json        how it was made (dataset, arch, sizes, seed; for a backbone + head model
                      also the base weights and their sha256, augmentation, both phases)
      test.npz        the held-out test images (uint8) and labels: convert and verify measure on these
      calib.npz       the first `calibration_samples` (1,024) training images: the int8 calibration set
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import datasets
from .errors import DatasetError, ModelError
from .progress import progress_bar
from .settings import get_settings


@dataclass
class RunConfig:
    """What to train: mirrors ``browserml train``'s options."""

    data: str
    arch: str = "cnn"
    input_size: int = 28
    epochs: int = 3
    batch_size: int = 64
    limit: int | None = None
    channels: int | None = None
    alpha: float = 1.0
    head: str = "flatten"
    learning_rate: float = 1e-3
    seed: int | None = None
    # Backbone + head training (see architectures.transfer); the defaults keep the original
    # from-scratch path for cnn / mobilenetv2.
    weights: str = "none"  # none | imagenet | a path (.keras, .h5, .weights.h5, model.json)
    fine_tune: int = 0  # phase 2: unfreeze the backbone's top N layers (BatchNorm stays frozen)
    fine_tune_epochs: int | None = None  # phase 2 epochs (default: epochs)
    augment: str | None = None  # flip,rotation,zoom,contrast | none (default: all with weights)
    input_range: str | None = None  # what the backbone expects (default: the family's own)
    patience: int = 3  # early stopping on validation loss
    dropout: float = 0.2  # before the dense head

    def uses_backbone(self) -> bool:
        """Whether this run is a backbone + head (pretrained weights, augmentation, fine-tuning
        or a keras.applications family the original path does not build)."""
        from .backbones import SCRATCH_ARCHITECTURES

        return (self.arch not in SCRATCH_ARCHITECTURES or self.weights != "none"
                or self.fine_tune > 0 or self.augment not in (None, "", "none")
                or self.input_range is not None)

    def augment_names(self) -> tuple[str, ...]:
        """Return the augmentation to use: as given, else all four with pretrained weights."""
        from .augmentation import AUGMENTATIONS, parse_augment

        if self.augment is None:
            return AUGMENTATIONS if self.weights != "none" else ()
        return parse_augment(self.augment)


@dataclass
class RunResult:
    """Where the run went and what it scored."""

    run_dir: Path
    val_accuracy: float
    test_accuracy: float
    params: int
    skipped: list[str]


def keras_progress(epochs: int, steps: int, label: str = ""):
    """Return a Keras callback drawing one rich bar per epoch (loss and accuracy as status);
    ``label`` prefixes each bar (the training phase)."""
    import keras

    class RichProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = progress_bar()
            self.bar.start()

        def on_epoch_begin(self, epoch, logs=None):
            self.task = self.bar.add_task(f"{label}epoch {epoch + 1}/{epochs}", total=steps,
                                          status="")

        def on_train_batch_end(self, batch, logs=None):
            logs = logs or {}
            status = f"loss {logs.get('loss', 0):.4f} acc {logs.get('accuracy', 0):.4f}"
            self.bar.update(self.task, completed=batch + 1, status=status)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.bar.update(self.task, status=f"loss {logs.get('loss', 0):.4f} "
                            f"acc {logs.get('accuracy', 0):.4f} "
                            f"val_acc {logs.get('val_accuracy', 0):.4f}")

        def on_train_end(self, logs=None):
            self.bar.stop()

    return RichProgress()



def load_splits(config: RunConfig, seed: int, channels: int | None):
    """Load ``config.data`` and split it (seeded); DatasetError when nothing is left to train on.
    Needs no TensorFlow, so a bad dataset fails before it starts."""
    data = datasets.load(config.data, input_size=config.input_size, limit=config.limit,
                         seed=seed, channels=channels)
    splits = datasets.split(data, seed)
    if len(splits.train) == 0:
        raise DatasetError(
            f"{config.data}: {len(data)} samples are too few, none left to train on after the "
            "test and validation split; give each class at least 3 images"
        )
    return data, splits

def train(config: RunConfig, out: Path) -> RunResult:
    """Train ``config`` and write the run directory ``out``; return its scores.

    Deterministic for a given seed (data split, initialisation, dropout and shuffling).
    """
    seed = config.seed if config.seed is not None else get_settings().seed
    if config.uses_backbone():
        from .finetune import train_backbone

        return train_backbone(config, out, seed)
    # Data first: a bad dataset fails at once with one clear line, before TensorFlow starts (and
    # logs to stderr). The loaders and the split use their own seeded generators.
    data, splits = load_splits(config, seed, config.channels)

    import keras

    from .architectures import build

    keras.utils.set_random_seed(seed)
    model = build(config.arch, input_size=config.input_size, num_classes=len(data.class_names),
                  channels=data.images.shape[-1], alpha=config.alpha, head=config.head, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    steps = int(np.ceil(len(splits.train) / config.batch_size))
    history = model.fit(
        splits.train.images, splits.train.labels,
        validation_data=(splits.val.images, splits.val.labels),
        epochs=config.epochs, batch_size=config.batch_size, shuffle=True, verbose=0,
        callbacks=[keras_progress(config.epochs, steps)],
    )
    _, val_accuracy = model.evaluate(splits.val.images, splits.val.labels, verbose=0)
    _, test_accuracy = model.evaluate(splits.test.images, splits.test.labels, verbose=0)
    write_run(out, model, config, seed, data, splits, history.history,
              float(val_accuracy), float(test_accuracy))
    return RunResult(out, float(val_accuracy), float(test_accuracy), model.count_params(),
                     data.skipped)


def write_run(out: Path, model, config: RunConfig, seed: int, data: datasets.Dataset,
              splits: datasets.Splits, history: dict, val_accuracy: float,
              test_accuracy: float, extra: dict | None = None) -> None:
    """Write every file of the run directory (see the module docstring); ``extra`` adds to
    run.json (and its ``phases`` to metrics.json)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    (out / "labels.json").write_text(json.dumps(data.class_names) + "\n")
    metrics = {
        "val_accuracy": val_accuracy,
        "test_accuracy": test_accuracy,
        "params": model.count_params(),
        "samples": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "skipped": data.skipped,
        "history": {k: [float(v) for v in vals] for k, vals in history.items()},
    }
    if extra and "phases" in extra:
        metrics["phases"] = extra["phases"]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    run = {"data": config.data, "arch": config.arch, "input_size": config.input_size,
           "channels": int(data.images.shape[-1]), "epochs": config.epochs, "seed": seed,
           "limit": config.limit, "alpha": config.alpha, "head": config.head, **(extra or {})}
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    np.savez_compressed(out / "test.npz", images=splits.test.images, labels=splits.test.labels)
    write_calibration(out, splits.train.images)


def write_calibration(out: Path, train_images: np.ndarray) -> None:
    """Keep the first ``calibration_samples`` training images as the int8 calibration set."""
    np.savez_compressed(out / "calib.npz", images=train_images[:get_settings().calibration_samples])


@dataclass
class Run:
    """A run directory read back: what convert and verify need."""

    run_dir: Path
    labels: list[str]
    info: dict
    metrics: dict
    test_images: np.ndarray
    test_labels: np.ndarray

    def load_model(self):
        """Return the trained Keras model."""
        import keras

        return keras.models.load_model(self.run_dir / "model.keras", compile=False)

    def calibration_images(self) -> np.ndarray:
        """Return the representative images for int8 calibration."""
        with np.load(self.run_dir / "calib.npz") as calib:
            return calib["images"]


def read_run(run_dir: Path) -> Run:
    """Given a run directory, return it read back, or raise ModelError naming what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ModelError(f"{run_dir}: run directory not found; train one with 'browserml train'")
    for name in ("model.keras", "labels.json", "metrics.json", "run.json", "test.npz"):
        if not (run_dir / name).is_file():
            raise ModelError(f"{run_dir}: {name} is missing; is this a 'browserml train' output?")
    try:
        labels = json.loads((run_dir / "labels.json").read_text())
        info = json.loads((run_dir / "run.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{run_dir}: malformed JSON ({exc})") from None
    with np.load(run_dir / "test.npz") as test:
        return Run(run_dir, labels, info, metrics, test["images"], test["labels"])


def refresh_calibration(run_dir: Path) -> Run:
    """Given a run made with another ``calibration_samples``, rewrite its ``calib.npz`` from the
    same training split (it depends only on the run's seed, so these are the images training it
    again would keep), and return the run read back."""
    info = read_run(run_dir).info
    data = datasets.load(info["data"], input_size=info["input_size"], limit=info["limit"],
                         seed=info["seed"], channels=info["channels"])
    write_calibration(run_dir, datasets.split(data, info["seed"]).train.images)
    return read_run(run_dir)
