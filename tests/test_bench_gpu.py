"""``browserml bench`` on any Chromium with a GPU (issue 18): the ``--gpu`` preset's flags reach
the browser's real command line, and a GPU backend that is really SwiftShader is named loudly in
the report. Runs on CPU machines (CI): here every GPU is a software one."""

from __future__ import annotations

import json

from click.testing import CliRunner

from browserml.bench.gpu import GPU_FLAGS, adapter_facts, software_gpu_warnings
from browserml.browser import browser_options, launch_browser
from browserml.cli import cli


def test_gpu_preset_flags_are_on_chromiums_command_line():
    """chrome://version shows the command line Chromium really got: every preset flag is there."""
    with browser_options(flags=GPU_FLAGS), launch_browser() as context:
        page = context.new_page()
        page.goto("chrome://version")
        command_line = page.inner_text("#command_line")
    for flag in GPU_FLAGS:
        assert flag in command_line, flag


def bench_json(build, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["bench", str(build), "--engines", "tfjs", "--variants", "uint8",
                                      "--n", "5", "--budget-ms", "1500", "--no-sdk", "--no-native",
                                      "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_bench_gpu_flag_reaches_the_browser_and_no_native_skips_tensorflow(digits_build):
    """A real bench run with --gpu --no-native (wasm: this machine has no Vulkan GPU for webgl):
    the report carries the preset's flags as launched, and no native figures."""
    report = bench_json(digits_build, "--backends", "wasm", "--gpu")
    assert set(GPU_FLAGS) <= set(report["browser"]["flags"])
    assert report["native"] == {} and report["environment"]["tensorflow"] is None
    assert report["warnings"] == [], "wasm ran no GPU backend"


def test_bench_warns_loudly_when_webgl_is_swiftshader(digits_build):
    """TF.js webgl in headless Chromium without a GPU: the renderer is SwiftShader, and the report
    says the webgl figures are not from a GPU."""
    report = bench_json(digits_build, "--backends", "webgl")
    gpu = report["browser"]["gpu"]
    assert gpu["webgl_renderer"] and gpu["webgl_software"], gpu
    assert any("webgl figures are NOT from a GPU" in w for w in report["warnings"])


def test_warnings_name_each_software_backend_only_when_it_ran():
    nvidia = {"webgl": "ANGLE (NVIDIA, Vulkan 1.4.312 (NVIDIA NVIDIA H200 (0x00002335)), NVIDIA)",
              "webgpu": json.dumps({"vendor": "nvidia", "isFallbackAdapter": False})}
    assert software_gpu_warnings(nvidia, {"webgl", "webgpu"}) == []
    swift = {"webgl": "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero)), SwiftShader driver)",
             "webgpu": json.dumps({"vendor": "google", "architecture": "swiftshader",
                                   "isFallbackAdapter": True})}
    assert adapter_facts(swift)["webgpu_software"] and adapter_facts(swift)["webgl_software"]
    assert len(software_gpu_warnings(swift, {"webgl", "webgpu"})) == 2
    assert software_gpu_warnings(swift, {"wasm"}) == []
