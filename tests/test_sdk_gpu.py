"""Issue 18 on a machine without a GPU (CI): the LiteRT.js WebGPU candidate in real Chromium.

Chromium here has no hardware WebGPU adapter (none at all, or SwiftShader's fallback adapter):
the SDK must not offer LiteRT.js on WebGPU as a start, must not measure a software adapter, and
must answer every image. A browser that does hand out an adapter whose device then cannot be
created (a lost / refused GPU device) is stood in for by a page-level adapter whose
``requestDevice`` rejects: a remembered ``litert/webgpu`` choice then falls back to a CPU path,
reported, with no failed prediction.
"""

from __future__ import annotations

from browserml.browser import launch_browser
from test_sdk import CLASSIFY_ALL, b64, count_correct, open_blank

# A hardware-looking adapter whose device request fails, installed before the SDK loads.
BROKEN_ADAPTER = """() => {
  const adapter = {
    info: { vendor: 'nvidia', architecture: '', device: '', description: '', isFallbackAdapter: false },
    isFallbackAdapter: false, features: new Set(), limits: {},
    requestDevice: async () => { throw new Error('device request refused (test)'); },
  };
  const gpu = { requestAdapter: async () => adapter };
  Object.defineProperty(navigator, 'gpu', { value: gpu, configurable: true });
}"""

REMEMBER = """async ([model, choice]) => {
  const { deviceKey } = await import('/sdk/device.js');
  const { choiceKey } = await import('/sdk/selection.js');
  const manifest = await (await fetch(`/v1/models/${model}/manifest?channel=stable`)).json();
  const key = choiceKey(deviceKey(), model, manifest.version);
  localStorage.setItem(key, JSON.stringify({ ...choice, measured: true }));
}"""


def test_litert_webgpu_skipped_cleanly_without_a_hardware_adapter(sdk_server, digit_pngs):
    """LiteRT.js only, all its backends allowed, on this CPU-only Chromium: every answer comes
    from LiteRT.js on wasm, nothing fails, and the GPU facts say why WebGPU was left out."""
    sample = digit_pngs[::10]
    # The GPU facts are read by the upgrade, after idle time: wait for it before reading stats
    # (on a loaded machine ten answers can come before the upgrade starts).
    script = CLASSIFY_ALL.replace("const stats = await clf.stats();",
                                  "await clf.upgraded(); const stats = await clf.stats();")
    with launch_browser() as context:
        page = open_blank(context, sdk_server.url)
        out = page.evaluate(script, [[b64(png) for _, png in sample],
                                     {"engines": ["litert"], "remember": False}])
    assert {(a["engine"], a["backend"]) for a in out["answers"]} == {("litert", "wasm")}
    assert count_correct(sample, out["answers"]) >= len(sample) - 1, "int8 may miss one digit"
    stats = out["stats"]
    gpu = stats["gpu"]
    assert gpu is not None, "the upgrade read the GPU facts"
    assert gpu["webgpu"] is None or gpu["webgpu"]["software"], gpu
    assert not stats["fallbacks"] and stats["errors"] == 0
    probed = [r["candidate"]["backend"] for r in (stats["upgrade"].get("results") or [])]
    assert "webgpu" not in probed, "a software / missing adapter is never measured"
    if gpu["webgpu"] is not None:
        skipped = stats["upgrade"]["skipped"]
        assert any(s["backend"] == "webgpu" and "software" in s["reason"] for s in skipped)


def test_remembered_litert_webgpu_whose_device_fails_falls_back_without_a_failed_prediction(
        sdk_server, digit_pngs):
    """A remembered LiteRT.js WebGPU choice on a browser whose adapter refuses a device: the SDK
    answers first on LiteRT.js wasm, the move to WebGPU fails and is reported as a fallback, and
    every prediction before and after it is answered."""
    sample = digit_pngs[::10]
    with launch_browser() as context:
        page = open_blank(context, sdk_server.url)
        page.evaluate(BROKEN_ADAPTER)
        choice = {"engine": "litert", "backend": "webgpu", "variant": "tflite-int8"}
        page.evaluate(REMEMBER, ["digits", choice])
        again = ("await clf.upgraded(); for (const b64 of pngs) answers.push(await clf.classify("
                 "new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], "
                 "{ type: 'image/png' }))); const stats = await clf.stats();")
        script = CLASSIFY_ALL.replace("const stats = await clf.stats();", again)
        out = page.evaluate(script, [[b64(png) for _, png in sample], {"engines": ["litert"]}])
    assert len(out["answers"]) == 2 * len(sample)
    assert {(a["engine"], a["backend"]) for a in out["answers"]} == {("litert", "wasm")}
    labels = [a["labels"][0]["label"] for a in out["answers"]]
    assert labels[: len(sample)] == labels[len(sample):], "same answers before and after the failed move"
    assert count_correct(sample, out["answers"][: len(sample)]) >= len(sample) - 1
    stats = out["stats"]
    assert stats["errors"] == 0
    assert stats["selection"]["source"] == "remembered"
    assert stats["upgrade"]["state"] == "failed"
    fallbacks = [e for e in out["events"] if e["type"] == "fallback"]
    assert [(e["fromBackend"], e["phase"]) for e in fallbacks] == [("webgpu", "upgrade")]
    assert "device request refused" in fallbacks[0]["reason"]
