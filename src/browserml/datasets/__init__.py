"""Datasets: each loader returns a :class:`Dataset` of uint8 pixels, integer labels and class names.

Pixels stay raw (0-255, NHWC) all the way into the model, because the model itself rescales: the
browser then feeds exactly what it decodes, and Python and TF.js cannot disagree on preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DatasetError


@dataclass
class Dataset:
    """Images as uint8 ``[N, H, W, C]``, labels as int ``[N]`` indexing ``class_names``."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError("images and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Dataset:
        """Given indices, return the dataset of those samples (class names and the list of
        skipped files kept: ``--limit`` must not hide what could not be read)."""
        return Dataset(self.images[index], self.labels[index], self.class_names, self.skipped)


@dataclass
class Splits:
    """A deterministic train / validation / test split."""

    train: Dataset
    val: Dataset
    test: Dataset


def split(dataset: Dataset, seed: int, val: float = 0.1, test: float = 0.1) -> Splits:
    """Given a dataset, return a shuffled train/val/test split that depends only on ``seed``.

    The split is stratified, so every class appears in each part in proportion.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in range(len(dataset.class_names)):
        index = np.flatnonzero(dataset.labels == label)
        rng.shuffle(index)
        n_test = max(1, round(len(index) * test))
        n_val = max(1, round(len(index) * val))
        parts["test"].append(index[:n_test])
        parts["val"].append(index[n_test : n_test + n_val])
        parts["train"].append(index[n_test + n_val :])
    chosen = {name: np.concatenate(items) for name, items in parts.items()}
    for index in chosen.values():
        rng.shuffle(index)
    return Splits(**{name: dataset.subset(index) for name, index in chosen.items()})


def require_classes(dataset: Dataset, where: str) -> Dataset:
    """Return the dataset if it has at least two classes with samples, else raise DatasetError."""
    if len(dataset) == 0:
        raise DatasetError(f"{where}: no usable images")
    present = np.unique(dataset.labels)
    if len(present) < 2:
        only = dataset.class_names[int(present[0])] if len(present) else "none"
        raise DatasetError(
            f"{where}: a classifier needs at least 2 classes, found 1 ({only!r}); "
            "add a folder per class"
        )
    return dataset


def first(dataset: Dataset, limit: int | None, seed: int) -> Dataset:
    """Given ``--limit N``, return N samples drawn in a fixed, class-balanced order (all if None)."""
    if limit is None or limit >= len(dataset):
        return dataset
    if limit < 2:
        raise DatasetError(f"--limit {limit}: need at least 2 samples")
    order = np.random.default_rng(seed).permutation(len(dataset))
    return dataset.subset(np.sort(order[:limit]))


def load(name_or_path: str, *, input_size: int, limit: int | None = None, seed: int = 1234,
         channels: int | None = None) -> Dataset:
    """Given ``mnist``, ``shapes`` or a folder path, return the dataset at ``input_size``.

    ``channels`` overrides the source's natural channel count (mnist 1, others 3).
    """
    from . import folder, mnist, shapes

    if name_or_path == "mnist":
        data = mnist.load(input_size=input_size, channels=channels or 1)
    elif name_or_path == "shapes":
        count = limit if limit is not None else 2400
        data = shapes.generate(count, input_size=input_size, seed=seed, channels=channels or 3)
    else:
        data = folder.load(name_or_path, input_size=input_size, channels=channels or 3)
    return require_classes(first(data, limit, seed), name_or_path)
