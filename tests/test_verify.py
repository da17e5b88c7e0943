"""Verify in real TF.js (headless Chromium): parity of the digits build with Keras, and a
tampered build caught with its variant and layer named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from browserml.browser import launch_browser, open_page, resolve_mount, serve_local_files
from browserml.errors import BrowserError, FormatError, ModelError, VerificationError
from browserml.settings import get_settings
from browserml.tfjs.layers_model import read_model_json
from browserml.tfjs.weights import stored_bytes
from browserml.variants import read_build
from browserml.verify import VerifyReport, verify

SAMPLES = 50


@pytest.fixture(scope="module")
def report(digits_build: Path, digits_run: Path) -> VerifyReport:
    return verify(digits_build, digits_run, samples=SAMPLES)


def test_digits_build_passes_in_chromium(report, digits_build):
    build = read_build(digits_build)
    assert report.ok and report.samples == SAMPLES
    assert [v.name for v in report.variants] == [v.name for v in build.variants]
    assert all(v.passed for v in report.variants)


def test_float32_matches_keras_within_tolerance(report):
    float32 = next(v for v in report.variants if v.name == "float32")
    assert float32.engine == "tfjs" and float32.backend == "wasm"
    assert float32.max_abs_diff is not None and float32.max_abs_diff <= 1e-4
    assert float32.agreement == 1.0
    assert float32.diverging_layer is None


def test_agreement_is_reported_for_every_tfjs_variant(report):
    tfjs = {v.name: v for v in report.variants if v.engine == "tfjs"}
    assert sorted(tfjs) == ["float16", "float32", "uint8"]
    for v in tfjs.values():
        assert v.agreement is not None and 0.9 <= v.agreement <= 1.0, v
        assert v.accuracy is not None and 0.0 <= v.accuracy <= 1.0
        # accuracy and agreement are shares of the 50 images
        assert round(v.agreement * SAMPLES) == pytest.approx(v.agreement * SAMPLES)
    # the browser really ran the quantized files: their outputs moved away from Keras
    assert tfjs["uint8"].max_abs_diff > tfjs["float32"].max_abs_diff


def weight_offset(model_dir: Path, name: str) -> tuple[str, int, int]:
    """Return (shard, offset, size) of weight ``name`` in a single-shard TF.js model folder."""
    [group] = read_model_json(model_dir / "model.json")["weightsManifest"]
    assert len(group["paths"]) == 1
    offset = 0
    for spec in group["weights"]:
        size = stored_bytes(spec)
        if spec["name"] == name:
            return group["paths"][0], offset, size
        offset += size
    raise AssertionError(f"{name} not in the manifest")


def test_tampered_float32_weights_fail_naming_variant_and_layer(tmp_path, digits_build, digits_run):
    tampered = tmp_path / "digits"
    shutil.copytree(digits_build, tampered)
    shard, offset, size = weight_offset(tampered / "float32", "conv64/kernel")
    path = tampered / "float32" / shard
    data = bytearray(path.read_bytes())
    kernel = np.frombuffer(bytes(data[offset:offset + size]), dtype="<f4")
    data[offset:offset + size] = (kernel * 1.5).astype("<f4").tobytes()
    path.write_bytes(bytes(data))

    with pytest.raises(VerificationError) as caught:
        verify(tampered, digits_run, samples=SAMPLES)
    message = str(caught.value)
    assert message.startswith("variant float32:")
    assert "first diverging layer: conv64)" in message


def test_build_without_variants_json(tmp_path, digits_run):
    with pytest.raises(FormatError, match=r"variants\.json: not found; run 'browserml convert'"):
        verify(tmp_path, digits_run, samples=SAMPLES)


def test_verify_finds_the_run_from_variants_json(tmp_path, digits_build, digits_run):
    """A build copied anywhere still knows its run: ``browserml verify build/x`` needs no --run."""
    build_dir = tmp_path / "elsewhere" / "digits"
    shutil.copytree(digits_build, build_dir)
    assert read_build(build_dir).origin == {"run": str(digits_run.resolve())}
    report = verify(build_dir, samples=10)
    assert report.ok and report.samples == 10


def test_a_build_that_does_not_say_where_it_came_from(tmp_path, digits_build):
    build_dir = tmp_path / "build" / "digits"
    shutil.copytree(digits_build, build_dir)
    document = json.loads((build_dir / "variants.json").read_text())
    document.pop("origin")
    (build_dir / "variants.json").write_text(json.dumps(document))
    with pytest.raises(ModelError, match="does not say which model it came from") as caught:
        verify(build_dir, samples=SAMPLES)
    assert str(tmp_path / "runs" / "digits") in str(caught.value)


@pytest.fixture
def fresh_settings():
    """Let a test change BROWSERML_* variables; the cached settings are rebuilt around it."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_missing_chromium_is_a_clear_error(monkeypatch, fresh_settings, digits_build, digits_run,
                                           tmp_path):
    monkeypatch.setenv("BROWSERML_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(BrowserError, match="no-chromium not found: install Debian's chromium"):
        verify(digits_build, digits_run, samples=SAMPLES)


def test_pages_reach_only_their_mounts(tmp_path):
    build = tmp_path / "build"
    (build / "float32").mkdir(parents=True)
    (build / "float32" / "model.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("no")
    mounts = {"/model/": build}

    assert resolve_mount("/model/float32/model.json", mounts) == (build / "float32" / "model.json")
    assert resolve_mount("/model/../secret.txt", mounts) is None
    assert resolve_mount("/model/float32/../../secret.txt", mounts) is None
    assert resolve_mount("/model/float32/", mounts) is None
    assert resolve_mount("/other/secret.txt", mounts) is None


def test_local_files_are_served_isolated_and_a_large_file_reaches_the_page(tmp_path):
    """The loopback file server behind verify and bench: isolation headers, 404 outside the
    mounts, and a single 120 MB file (the reference CNN's float32 .tflite is 103 MB) arrives whole
    in a crossOriginIsolated page — Playwright request routing used to close the browser on it."""
    (tmp_path / "index.html").write_text("<!doctype html><title>ok</title>")
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(120 * 1024 * 1024)  # sparse: no disk I/O to make it
    with serve_local_files({"/files/": tmp_path}) as origin:
        head = httpx.head(f"{origin}/files/big.bin")
        assert head.status_code == 200 and head.headers["content-length"] == str(120 * 1024 * 1024)
        assert head.headers["cross-origin-embedder-policy"] == "require-corp"
        assert httpx.get(f"{origin}/files/../secret.txt").status_code == 404
        with launch_browser() as context:
            page = context.new_page()
            page.goto(f"{origin}/files/index.html")
            got = page.evaluate("""async () => {
                const bytes = await (await fetch('/files/big.bin')).arrayBuffer();
                return [self.crossOriginIsolated, bytes.byteLength];
            }""")
    assert got == [True, 120 * 1024 * 1024]


def test_a_page_whose_script_cannot_load_fails_at_once_naming_it(tmp_path):
    """A harness page with a broken import raises BrowserError naming the script, rather than
    waiting out the browser timeout; a page that loads is returned ready."""
    (tmp_path / "good.js").write_text("window.ready = true;\n")
    (tmp_path / "broken.js").write_text("import '/files/missing.js';\nwindow.ready = true;\n")
    for name in ("good", "broken"):
        (tmp_path / f"{name}.html").write_text(
            f'<!doctype html><script type="module" src="/files/{name}.js" '
            'onerror="window.browsermlLoadFailed = this.src"></script>')
    with serve_local_files({"/files/": tmp_path}) as origin, launch_browser() as context:
        context.set_default_timeout(60_000)
        page = open_page(context, f"{origin}/files/good.html", "window.ready === true")
        assert page.evaluate("window.ready") is True
        # BrowserError, not Playwright's TimeoutError: it did not wait for a page never ready.
        with pytest.raises(BrowserError, match=r"broken\.js failed to load"):
            open_page(context, f"{origin}/files/broken.html", "window.ready === true")
