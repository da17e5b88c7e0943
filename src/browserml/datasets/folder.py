"""Image folders: ``root/<label>/*.png|jpg|jpeg|webp``, one sub-folder per class.

Unreadable or corrupt files are skipped and counted (a training run must not die on one bad JPEG);
mixed sizes, grayscale and RGBA are normalised by :func:`browserml.datasets.images.decode`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DatasetError
from .images import decode

if TYPE_CHECKING:
    from . import Dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def class_folders(root: Path) -> list[Path]:
    """Given the dataset root, return its class sub-folders sorted by name, or raise
    DatasetError when the root is missing or has none."""
    if not root.exists():
        raise DatasetError(f"{root}: folder not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; expected root/<label>/*.png|jpg|webp")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"{root}: no class sub-folders; expected root/<label>/*.png|jpg|webp")
    return folders


def load(root: str | Path, input_size: int, channels: int = 3) -> Dataset:
    """Return every decodable image under ``root`` as a Dataset; bad files land in ``skipped``."""
    from . import Dataset  # runtime import: the package imports this module lazily

    root = Path(root)
    folders = class_folders(root)
    images, labels, skipped = [], [], []
    for label, folder in enumerate(folders):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            try:
                images.append(decode(path, input_size, channels))
                labels.append(label)
            except ValueError as exc:
                skipped.append(f"{path.relative_to(root)}: {exc}")
    if not images:
        raise DatasetError(
            f"{root}: no readable images in {len(folders)} class folder(s)"
            + (f" ({len(skipped)} unreadable)" if skipped else "")
        )
    return Dataset(
        np.stack(images), np.asarray(labels, dtype=np.int64), [f.name for f in folders], skipped
    )
