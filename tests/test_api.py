"""The Python API (``from browserml import ...``) and first-publish ergonomics (issue 19)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import import_module

import browserml
from test_cli import run_cli

API = {
    "train": "browserml.train", "RunConfig": "browserml.train", "convert": "browserml.convert",
    "verify": "browserml.verify", "import_model": "browserml.importer", "Registry": "browserml.registry",
    "create_app": "browserml.server.app", "serve": "browserml.server.run", "bench": "browserml.bench.harness",
    "Settings": "browserml.settings", "get_settings": "browserml.settings",
}


def test_import_browserml_is_light():
    """``import browserml`` imports neither TensorFlow nor the server stack; names load on use."""
    probe = ("import sys, browserml\n"
             "heavy = [m for m in ('tensorflow', 'keras', 'starlette', 'numpy') if m in sys.modules]\n"
             "print(','.join(heavy) or 'none')\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none"


def test_public_names_are_the_functions_the_cli_calls():
    for name, module in API.items():
        assert getattr(browserml, name) is getattr(import_module(module), name), name
    # Importing the submodule that shares a function's name does not replace the function.
    import_module("browserml.convert")
    import_module("browserml.train")
    assert callable(browserml.train) and browserml.train is import_module("browserml.train").train
    assert browserml.convert is import_module("browserml.convert").convert
    assert set(API) <= set(browserml.__all__) and set(API) <= set(dir(browserml))


def test_cli_first_publish_goes_on_stable_and_says_so(make_build, tmp_path):
    data = tmp_path / "data"
    first = run_cli("publish", make_build(seed=1), "--name", "digits", "--data-dir", data)
    assert first.returncode == 0, first.stderr
    assert "published digits v1 -> stable (first version of digits: stable points at it)" in first.stdout
    second = run_cli("publish", make_build(seed=2), "--name", "digits", "--data-dir", data)
    assert second.returncode == 0 and "published digits v2:" in second.stdout
    listing = run_cli("list", "--json", "--data-dir", data)
    assert '"stable"' in listing.stdout and listing.returncode == 0
    [model] = json.loads(listing.stdout)["models"]
    assert model["channels"]["stable"]["version"] == 1
