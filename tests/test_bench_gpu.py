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


def test_bench_gpu_flag_reports_adapter_and_warns_on_swiftshader(digits_build):
    """A real bench run of TF.js webgl with --gpu --no-native on this CPU-only machine: the report
    names the flags, the WebGL renderer (SwiftShader here) and warns that the webgl figures are
    not from a GPU."""
    result = CliRunner().invoke(cli, [
        "bench", str(digits_build), "--engines", "tfjs", "--backends", "webgl",
        "--variants", "uint8", "--n", "5", "--budget-ms", "1500", "--no-sdk", "--no-native",
        "--gpu", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(GPU_FLAGS) <= set(report["browser"]["flags"])
    assert report["native"] == {} and report["environment"]["tensorflow"] is None
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
