"""The bench harness on the real (tiny) digits model, in real Chromium, a few calls per
configuration: every figure present and positive, the JSON shape stable. No timing thresholds."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from browserml.bench.harness import abba, bench, configurations
from browserml.bench.report import markdown
from browserml.errors import ModelError
from browserml.variants import read_build


def positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def report(digits_build: Path, digits_run: Path):
    return bench(digits_build, run_dir=digits_run, backends=["webgl", "wasm", "cpu"], n=5,
                 repeats=2, budget_ms=300, peers=True, soak=50)


def test_every_configuration_has_positive_figures(report) -> None:
    labels = {r.config.label for r in report.results}
    assert {"tfjs/wasm/float32/b1", "tfjs/cpu/uint8/b1", "tfjs/webgl/float16/b1",
            "litert/wasm/tflite-int8/b1", "ort/wasm/onnx-float32/b1"} <= labels
    for result in report.results:
        assert result.error is None, (result.config.label, result.error)
        assert len(result.medians) == 2, result.config.label  # both ABBA repeats ran
        for figure in (result.min_ms, result.median_ms, result.p95_ms, result.load_ms,
                       result.warmup_ms, result.ratio_native_tf, result.ratio_native_litert):
            assert positive(figure), (result.config.label, figure)
        assert result.min_ms <= result.median_ms <= result.p95_ms
        assert result.spread >= 0
    tfjs = [r for r in report.results if r.config.engine == "tfjs"]
    assert all(r.tensor_drift == 0 for r in tfjs), [(r.config.label, r.tensor_drift) for r in tfjs]
    assert {r.backend_used for r in tfjs} == {"webgl", "wasm", "cpu"}


def test_native_baselines_and_environment(report) -> None:
    native = report.native["1"]
    assert positive(native["tensorflow"])
    assert all(positive(native[f"litert/tflite-{v}"]) for v in ("float32", "float16", "int8"))
    cpu = report.environment["cpu"]
    assert cpu["cores"] >= 1 and cpu["model"]
    assert report.environment["tfjs"] == "4.22.0"
    assert report.environment["litertjs"]
    browser = report.browser
    assert browser["crossOriginIsolated"] is True
    assert browser["simd"] is True and browser["threads"] is True
    assert browser["int8Dot"] in ("usdot", "sdot", "none")  # Chromium has relaxed SIMD
    assert browser["webgl"]  # the adapter string (SwiftShader on a GPU-less machine)
    line = markdown(report).splitlines()[0]
    assert "relaxed-SIMD int8 dot product" in line and "not available" not in line, line


def test_sdk_choice_load_and_soak(report) -> None:
    sdk = report.sdk
    assert sdk["choice"]["engine"] in ("tfjs", "litert") and sdk["choice"]["backend"]
    for figure in (sdk["cold"]["load_ms"], sdk["cached"]["load_ms"], sdk["median_ms"],
                   sdk["cold"]["first_prediction_ms"]):
        assert positive(figure)
    assert sdk["soak"]["predictions"] == 50 and sdk["soak"]["tensor_drift"] == 0
    ratios = sdk["ratios"]
    for key in ("over_fastest", "over_tfjs_default", "over_onnx_peer", "over_native_tf",
                "over_native_litert"):
        assert positive(ratios[key]), key
    json.dumps(report.to_json())  # the whole report is plain JSON


def test_abba_order_and_configuration_filters(digits_build: Path) -> None:
    build = read_build(digits_build)
    configs = configurations(build, ["tfjs"], ["wasm", "cpu"], ["float32"], [1, 8])
    assert [c.label for c in configs] == ["tfjs/wasm/float32/b1", "tfjs/cpu/float32/b1",
                                          "tfjs/wasm/float32/b8", "tfjs/cpu/float32/b8"]
    order = abba(configs[:2], repeats=2)
    assert [(r, c.label) for r, c in order] == [
        (0, "tfjs/wasm/float32/b1"), (0, "tfjs/cpu/float32/b1"),
        (1, "tfjs/cpu/float32/b1"), (1, "tfjs/wasm/float32/b1")]
    with pytest.raises(ModelError, match="no configuration"):
        configurations(build, ["tfjs"], ["wasm"], ["no-such-variant"], [1])


def test_cli_json_and_html(digits_build: Path, digits_run: Path, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "browserml.cli", "bench", str(digits_build), "--run", str(digits_run),
         "--engines", "litert", "--variants", "tflite-int8", "--n", "5", "--no-sdk", "--json",
         "--html", str(html)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads(done.stdout)
    assert [r["config"]["engine"] for r in payload["results"]] == ["litert"]
    assert positive(payload["results"][0]["median_ms"])
    page = html.read_text()
    assert "litert/wasm/tflite-int8/b1" in page and "data:image/svg+xml;base64," in page


def test_cli_bad_build_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "browserml.cli", "bench", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error:") and "Traceback" not in done.stderr
