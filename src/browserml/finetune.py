"""Fine-tuning: a backbone + head trained the way teams with a few thousand images train.

Phase 1 trains the head with the whole backbone frozen. Frozen BatchNorm layers run in inference
mode in Keras 3 (``trainable=False`` means ``training=False`` for them), so the pretrained
statistics are used, not the statistics of a small batch. Phase 2 (``fine_tune=N``) unfreezes the
backbone's top N layers, BatchNorm excepted, and trains on at a learning rate ten times lower, so
the pretrained features move a little instead of being overwritten. Both phases stop early on
validation loss (keeping the best weights), weigh classes by inverse frequency when a folder is
unbalanced, and draw progress bars. Trained from scratch (``weights="none"``) there is one phase
with everything trainable.

The run directory has the same files as any run (see :mod:`browserml.train`): ``model.keras`` is
the inference model, without the augmentation layers, so convert / verify / publish take it as
they take any run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import datasets
from .errors import ModelError
from .train import RunConfig, RunResult, keras_progress, load_splits, write_run

FINE_TUNE_LR_FACTOR = 0.1


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float] | None:
    """Return ``{class: n / (k * n_class)}`` when the classes are unbalanced, else None (equal
    weights change nothing). A class absent from training gets weight 1."""
    counts = np.bincount(labels, minlength=num_classes)
    present = counts[counts > 0]
    if present.min() == present.max():
        return None
    total, k = counts.sum(), len(present)
    return {c: float(total / (k * n)) if n else 1.0 for c, n in enumerate(counts)}


def count_trainable(model) -> int:
    """Return how many parameters ``fit`` would update."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def freeze(layers: list) -> None:
    """Freeze every layer (phase 1: the whole backbone)."""
    for layer in layers:
        layer.trainable = False


def unfreeze_top(layers: list, count: int) -> int:
    """Unfreeze the top ``count`` backbone layers except BatchNorm (its statistics stay the
    pretrained ones); return how many layers with weights became trainable."""
    from keras import layers as keras_layers

    opened = 0
    for layer in layers[-count:]:
        if isinstance(layer, keras_layers.BatchNormalization):
            continue
        layer.trainable = True
        opened += bool(layer.weights)
    return opened


def check_config(config: RunConfig) -> None:
    """Refuse option combinations that cannot mean anything, before any data or TensorFlow."""
    from .augmentation import parse_augment
    from .backbones import check_arch, imagenet_weights_file

    check_arch(config.arch, config.input_size)
    if config.fine_tune < 0:
        raise ModelError(f"--fine-tune {config.fine_tune}: give a number of layers >= 0")
    if config.fine_tune and config.weights == "none":
        raise ModelError("--fine-tune needs pretrained --weights (imagenet or a path); "
                         "from scratch every layer trains already")
    parse_augment(config.augment)
    if config.weights == "imagenet" and config.arch == "cnn":
        raise ModelError("cnn has no imagenet weights; pick a keras.applications --arch "
                         "(mobilenetv2, ...) or --weights PATH of a trained cnn")
    if config.weights == "imagenet":
        imagenet_weights_file(config.arch, config.input_size)  # offline: the file must be there
    if config.weights not in ("none", "imagenet") and not Path(config.weights).exists():
        raise ModelError(f"--weights {config.weights}: no such file; give a .keras, .h5, "
                         ".weights.h5 or TF.js model.json, or 'imagenet'")


def fit_phase(trainer, splits: datasets.Splits, *, epochs: int, batch_size: int,
              learning_rate: float, patience: int, weights: dict | None, label: str) -> dict:
    """Compile and fit one phase; return its history and what it trained."""
    import keras

    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate),
                    loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    steps = int(np.ceil(len(splits.train) / batch_size))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                         restore_best_weights=True)
    history = trainer.fit(
        splits.train.images, splits.train.labels,
        validation_data=(splits.val.images, splits.val.labels),
        epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0, class_weight=weights,
        callbacks=[keras_progress(epochs, steps, label), stop],
    )
    values = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    return {"learning_rate": learning_rate, "epochs_run": len(values.get("loss", [])),
            "stopped_early": stop.stopped_epoch > 0, "trainable_params": count_trainable(trainer),
            "history": values}


def train_backbone(config: RunConfig, out: Path, seed: int) -> RunResult:
    """Train ``config`` as backbone + head (one or two phases) and write the run to ``out``.

    Options are checked first, then the data is loaded: both fail before TensorFlow starts."""
    check_config(config)
    channels = config.channels or (None if config.arch == "cnn" else 3)
    data, splits = load_splits(config, seed, channels)
    import keras

    from .architectures import transfer
    from .backbones import weights_sha256

    keras.utils.set_random_seed(seed)
    augment = config.augment_names()
    built = transfer(config.arch, input_size=config.input_size,
                     num_classes=len(data.class_names), channels=int(data.images.shape[-1]),
                     weights=config.weights, input_range=config.input_range, augment=augment,
                     dropout=config.dropout, seed=seed)
    weights = class_weights(splits.train.labels, len(data.class_names))
    pretrained = config.weights != "none"
    if pretrained:
        freeze(built.backbone_layers)
    common = {"batch_size": config.batch_size, "patience": config.patience, "weights": weights}
    phases = [dict(name="head" if pretrained else "scratch",
                   **fit_phase(built.trainer, splits, epochs=config.epochs,
                               learning_rate=config.learning_rate,
                               label="phase 1 " if pretrained else "", **common))]
    if config.fine_tune:
        unfreeze_top(built.backbone_layers, config.fine_tune)
        phases.append(dict(name=f"fine-tune top {config.fine_tune}",
                           **fit_phase(built.trainer, splits,
                                       epochs=config.fine_tune_epochs or config.epochs,
                                       learning_rate=config.learning_rate * FINE_TUNE_LR_FACTOR,
                                       label="phase 2 ", **common)))
    model = built.model
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, val_accuracy = model.evaluate(splits.val.images, splits.val.labels, verbose=0)
    _, test_accuracy = model.evaluate(splits.test.images, splits.test.labels, verbose=0)
    history: dict[str, list[float]] = {}
    for phase in phases:
        for key, values in phase["history"].items():
            history.setdefault(key, []).extend(values)
    extra = {
        "weights": config.weights, "base_weights_file": str(built.weights_file or "") or None,
        "base_weights_sha256": weights_sha256(built.weights_file),
        "augment": list(augment), "input_range": config.input_range, "fine_tune": config.fine_tune,
        "fine_tune_epochs": config.fine_tune_epochs, "dropout": config.dropout,
        "patience": config.patience, "learning_rate": config.learning_rate,
        "class_weights": weights, "backbone_layers": len(built.backbone_layers),
        "phases": [{k: v for k, v in phase.items()} for phase in phases],
    }
    write_run(out, model, config, seed, data, splits, history, float(val_accuracy),
              float(test_accuracy), extra)
    return RunResult(out, float(val_accuracy), float(test_accuracy), model.count_params(),
                     data.skipped)
