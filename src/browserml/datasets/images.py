"""Image decoding and normalisation shared by the folder loader and the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own guard against decompression bombs stays on; we additionally refuse absurd files.
MAX_PIXELS = 60_000_000


def decode(path: Path, input_size: int, channels: int) -> np.ndarray:
    """Given an image file, return it as uint8 ``[S, S, channels]``.

    EXIF orientation is applied (as browsers do), any mode (grayscale, RGBA, palette) is normalised,
    and any size is resized. Raises ``ValueError`` with a short reason for files that are not
    decodable images, so the caller can skip and count them.
    """
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"{image.width}x{image.height} is over {MAX_PIXELS} pixels")
            image.draft("RGB", (input_size * 2, input_size * 2))
            image = ImageOps.exif_transpose(image)
            image = image.convert("L" if channels == 1 else "RGB")
            image = image.resize((input_size, input_size), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        raise ValueError(str(exc).split("\n")[0] or type(exc).__name__) from None
    return pixels[..., None] if channels == 1 else pixels


def resize_batch(pixels: np.ndarray, size: int) -> np.ndarray:
    """Given uint8 ``[N, H, W, C]``, return it resized to ``[N, size, size, C]`` (bilinear)."""
    out = np.empty((len(pixels), size, size, pixels.shape[-1]), dtype=np.uint8)
    for i, sample in enumerate(pixels):
        mode_input = sample[..., 0] if sample.shape[-1] == 1 else sample
        resized = Image.fromarray(mode_input).resize((size, size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(resized).reshape(size, size, -1)
    return out
