"""Data augmentation: random flips, rotations, zooms and contrast, for training only.

The layers work on raw 0-255 pixels in front of the model (see
:class:`browserml.architectures.TransferModel`): ``fit`` sees them, the saved model never holds
them, so browsers and converters only ever get the inference graph. Names are checked without
TensorFlow, so a typo fails at once.
"""

from __future__ import annotations

from .errors import ModelError

AUGMENTATIONS = ("flip", "rotation", "zoom", "contrast")


def parse_augment(spec: str | None) -> tuple[str, ...]:
    """Given ``flip,rotation,zoom,contrast`` (any subset) or ``none``, return the names, or raise
    ModelError naming the unknown one."""
    if spec is None or spec.strip() in ("", "none"):
        return ()
    names = tuple(part.strip() for part in spec.split(",") if part.strip())
    for name in names:
        if name not in AUGMENTATIONS:
            raise ModelError(f"--augment {name}: unknown; use any of {','.join(AUGMENTATIONS)} "
                             "or none")
    return names


def augmentation_layers(names: tuple[str, ...], seed: int) -> list:
    """Return the random augmentation layers for ``names`` (active in training only): a
    horizontal flip, rotations up to +-18 degrees, zooms up to +-10 %, contrast +-20 %."""
    from keras import layers

    makers = {
        "flip": lambda: layers.RandomFlip("horizontal", seed=seed, name="augment_flip"),
        "rotation": lambda: layers.RandomRotation(0.05, seed=seed, name="augment_rotation"),
        "zoom": lambda: layers.RandomZoom(0.1, seed=seed, name="augment_zoom"),
        "contrast": lambda: layers.RandomContrast(0.2, seed=seed, name="augment_contrast"),
    }
    return [makers[name]() for name in names]
