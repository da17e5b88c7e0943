"""BrowserML: from a Keras image classifier to fast, safe inference in users' browsers.

The Python API is what the CLI calls; import from here::

    from browserml import train, RunConfig, convert, verify, import_model, Registry, create_app, serve, bench

    run = train(RunConfig(data="mnist", arch="cnn", input_size=28, epochs=3), "runs/digits")
    build = convert("runs/digits", "build/digits")            # a Build: variants, sizes, accuracy
    report = verify("build/digits")                           # real TF.js + LiteRT.js in Chromium
    with Registry(get_settings()) as registry:
        registry.publish("build/digits", "digits")            # the first version goes on stable

Names are imported on first use (PEP 562 ``__getattr__``), so ``import browserml`` stays fast and
never imports TensorFlow: only ``train``, ``convert``, ``verify`` and ``bench`` need it, and only
when called for. Three of them share their name with the submodule that defines them
(``browserml.train.train``...): the package attribute is always the function — importing the
submodule does not replace it — and the submodule stays importable as ``from browserml.train
import RunConfig``.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    "train": ("browserml.train", "train"),
    "RunConfig": ("browserml.train", "RunConfig"),
    "read_run": ("browserml.train", "read_run"),
    "convert": ("browserml.convert", "convert"),
    "verify": ("browserml.verify", "verify"),
    "import_model": ("browserml.importer", "import_model"),
    "read_build": ("browserml.variants", "read_build"),
    "Registry": ("browserml.registry", "Registry"),
    "create_app": ("browserml.server.app", "create_app"),
    "serve": ("browserml.server.run", "serve"),
    "bench": ("browserml.bench.harness", "bench"),
    "Settings": ("browserml.settings", "Settings"),
    "get_settings": ("browserml.settings", "get_settings"),
    "BrowserMLError": ("browserml.errors", "BrowserMLError"),
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from .bench.harness import bench as bench
    from .convert import convert as convert
    from .errors import BrowserMLError as BrowserMLError
    from .importer import import_model as import_model
    from .registry import Registry as Registry
    from .server.app import create_app as create_app
    from .server.run import serve as serve
    from .settings import Settings as Settings
    from .settings import get_settings as get_settings
    from .train import RunConfig as RunConfig
    from .train import read_run as read_run
    from .train import train as train
    from .variants import read_build as read_build
    from .verify import verify as verify


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562) and cache the name here."""
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'browserml' has no attribute {name!r}") from None
    value = getattr(import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """The package's module type: when the import system binds a submodule that shares its name
    with an exported function (``browserml.train``), keep the function as the attribute."""

    def __setattr__(self, name: str, value: Any) -> None:
        submodule = isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}"
        if name in _EXPORTS and submodule:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
