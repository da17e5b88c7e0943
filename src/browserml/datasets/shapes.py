"""A synthetic ``shapes`` dataset generated at any size, for 224x224 work without downloads.

Each image is one filled shape (random colour, size, position and rotation) on a random
background with noise, so the task is learnable but not trivial.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from . import Dataset

CLASSES = ["circle", "square", "triangle", "diamond", "cross", "ring", "star", "hexagon"]


def polygon(cx: float, cy: float, r: float, sides: int, turn: float) -> list[tuple[float, float]]:
    """Return the vertices of a regular polygon."""
    return [
        (cx + r * math.cos(turn + 2 * math.pi * k / sides),
         cy + r * math.sin(turn + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def star(cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    """Return the vertices of a five-pointed star."""
    return [
        (cx + (r if k % 2 == 0 else r * 0.45) * math.cos(turn + math.pi * k / 5),
         cy + (r if k % 2 == 0 else r * 0.45) * math.sin(turn + math.pi * k / 5))
        for k in range(10)
    ]


def draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float,
               turn: float, colour: tuple[int, int, int]) -> None:
    """Draw one shape of class ``kind``."""
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(2, int(r / 3)))
    elif kind == "square":
        draw.polygon(polygon(cx, cy, r, 4, turn), fill=colour)
    elif kind == "diamond":
        draw.polygon(polygon(cx, cy, r, 4, math.pi / 4 + turn * 0.1), fill=colour)
    elif kind == "triangle":
        draw.polygon(polygon(cx, cy, r, 3, turn), fill=colour)
    elif kind == "hexagon":
        draw.polygon(polygon(cx, cy, r, 6, turn), fill=colour)
    elif kind == "star":
        draw.polygon(star(cx, cy, r, turn), fill=colour)
    elif kind == "cross":
        w = r / 3
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=colour)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=colour)


def render(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Return one uint8 RGB image of ``kind``."""
    background = tuple(int(v) for v in rng.integers(0, 120, 3))
    colour = tuple(int(v) for v in rng.integers(130, 256, 3))
    image = Image.new("RGB", (size, size), background)
    r = size * rng.uniform(0.18, 0.32)
    cx, cy = rng.uniform(r, size - r, 2)
    draw_shape(ImageDraw.Draw(image), kind, cx, cy, r, rng.uniform(0, math.pi), colour)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-20, 21, (size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def generate(count: int, input_size: int = 224, seed: int = 1234, channels: int = 3,
             classes: int = len(CLASSES)) -> Dataset:
    """Return ``count`` shapes images (classes in turn) at ``input_size``, reproducible by seed."""
    from . import Dataset  # runtime import: the package imports this module lazily

    names = CLASSES[:classes]
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(names)
    images = np.stack([render(names[label], input_size, rng) for label in labels])
    if channels == 1:
        images = images.mean(axis=-1, keepdims=True).astype(np.uint8)
    return Dataset(images, labels.astype(np.int64), names)
