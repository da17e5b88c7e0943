"""LiteRT.js as the SDK's second engine (issue 8), in real Chromium against a real server with the
session's real trained digits build (its ``tflite-*`` variants included).

The digits model is small: TF.js answers it in a millisecond or two, so the SDK's size rule keeps
it on TF.js by itself. Tests that need the LiteRT.js path say so with ``litert: "force"`` (every
other rule still runs: integrity, compile, warm-up, NaN check, fallback) or lower the size rule
with ``litertMinMs: 0`` so that only the device decides. No timing thresholds here.
"""

from __future__ import annotations

import numpy as np

from browserml.browser import launch_browser
from browserml.variants import read_build
from test_sdk import BLANK, b64, count_correct, open_blank

# Load, answer the first image, wait for the LiteRT.js upgrade's verdict, then answer the rest.
CLASSIFY_UPGRADED = """
async ([pngs, options]) => {
  const { BrowserML } = await import('/sdk/browserml.js');
  const events = [];
  const clf = await BrowserML.load({
    model: 'digits', shared: false, telemetry: (e) => events.push(e), ...options });
  const blob = (s) => new Blob([Uint8Array.from(atob(s), (c) => c.charCodeAt(0))], { type: 'image/png' });
  const answers = [await clf.classify(blob(pngs[0]), { topK: 3 })];
  const upgrade = await clf.upgraded();
  for (const s of pngs.slice(1)) answers.push(await clf.classify(blob(s), { topK: 3 }));
  const stats = await clf.stats();
  await clf.dispose();
  return { answers, upgrade, stats, events: events.filter((e) => e.type !== 'predict'),
           isolated: self.crossOriginIsolated };
}
"""

LITERT_FILES = ("/vendor/@litertjs/", "/sdk/engines/litert.js")


def litert_requests(urls: list[str]) -> list[str]:
    return [u for u in urls if any(part in u for part in LITERT_FILES)]


def test_digits_through_litert_and_remembered(sdk_server, digit_pngs):
    """Forced LiteRT.js: the first answer comes from TF.js, then every answer from LiteRT.js
    (>= 95 of 100 right); results and stats name engine, backend, variant and threads. A second
    load on the same device and model version starts on LiteRT.js straight away."""
    pngs = [b64(png) for _, png in digit_pngs]
    with launch_browser() as context:
        page = open_blank(context, sdk_server.url)
        out = page.evaluate(CLASSIFY_UPGRADED, [pngs, {"litert": "force"}])
        again = page.evaluate(CLASSIFY_UPGRADED, [pngs[:3], {}])
    first, rest = out["answers"][0], out["answers"][1:]
    assert first["engine"] == "tfjs"
    assert out["upgrade"]["state"] == "switched"
    assert {(a["engine"], a["backend"], a["variant"]) for a in rest} == {("litert", "wasm", "tflite-int8")}
    assert count_correct(digit_pngs, out["answers"]) >= 95
    assert set(first) == {"labels", "ms", "backend", "variant", "version", "engine", "threads"}
    assert out["isolated"] and rest[0]["threads"] >= 2, "threads on a crossOriginIsolated page"
    stats = out["stats"]
    assert (stats["engine"], stats["variant"]) == ("litert", "tflite-int8")
    assert stats["threads"] == rest[0]["threads"]
    wasm = stats["wasm"]
    assert wasm["threads"] and wasm["relaxedSimd"] and wasm["int8Dot"] in ("usdot", "sdot", "none")
    race = out["upgrade"]["results"][0]
    assert race["ok"] and race["against"]["candidate"]["engine"] == "tfjs"
    assert not stats["fallbacks"] and not [e for e in out["events"] if e["type"] == "error"]

    assert again["stats"]["selection"]["source"] == "remembered"
    assert {a["engine"] for a in again["answers"]} == {"litert"}
    assert again["upgrade"]["state"] == "remembered"


def test_corrupt_tflite_falls_back_to_tfjs(digits_build, sdk_server_factory, digit_pngs):
    """Every .tflite blob altered on the way to the page (the server itself refuses to serve a
    blob that fails its hash, issue 17): TF.js answers all 100 digits correctly, each LiteRT.js
    variant is reported as a fallback with its integrity reason, nothing fails."""
    server = sdk_server_factory(digits_build)
    build = read_build(digits_build)
    tflite = [v for v in build.variants if v.engine == "litert"]
    assert len(tflite) == 3
    altered = {}
    for variant in tflite:
        data = bytearray((digits_build / variant.files[0].path).read_bytes())
        data[len(data) // 2] ^= 0xFF
        altered[variant.files[0].sha256] = bytes(data)

    def alter(route) -> None:
        body = altered[route.request.url.rsplit("/", 1)[-1]]
        route.fulfill(status=200, body=body, headers={"content-type": "application/octet-stream",
                                                      "cross-origin-resource-policy": "cross-origin"})

    with launch_browser() as context:
        page = open_blank(context, server.url)
        for sha in altered:
            page.route(f"**/v1/blobs/{sha}", alter)
        out = page.evaluate(CLASSIFY_UPGRADED, [[b64(png) for _, png in digit_pngs],
                                                {"litert": "force", "remember": False}])
    assert {a["engine"] for a in out["answers"]} == {"tfjs"}
    assert count_correct(digit_pngs, out["answers"]) >= 95
    assert out["upgrade"]["state"] == "failed"
    fallbacks = [e for e in out["events"] if e["type"] == "fallback"]
    assert sorted(e["fromVariant"] for e in fallbacks) == sorted(v.name for v in tflite)
    assert {e["code"] for e in fallbacks} == {"integrity"} and {e["phase"] for e in fallbacks} == {"upgrade"}
    assert all("sha256" in e["reason"] and "model.tflite" in e["reason"] for e in fallbacks)
    assert not [e for e in out["events"] if e["type"] == "error"]
    assert out["stats"]["errors"] == 0


def strip_isolation(route) -> None:
    """Serve the page without COOP/COEP: it is then not crossOriginIsolated (no wasm threads)."""
    response = route.fetch()
    headers = {k: v for k, v in response.headers.items()
               if k.lower() not in {"cross-origin-opener-policy", "cross-origin-embedder-policy"}}
    route.fulfill(response=response, headers=headers)


def test_without_isolation_no_litert_request(sdk_server, digit_pngs):
    """Same options (size rule off) on two pages: the isolated one fetches LiteRT.js; the one
    served without COOP/COEP makes no LiteRT.js request at all and TF.js serves."""
    sample = digit_pngs[::10]
    pngs = [b64(png) for _, png in sample]
    options = {"litertMinMs": 0, "remember": False}
    with launch_browser() as context:
        isolated = open_blank(context, sdk_server.url)
        seen: list[str] = []
        isolated.on("request", lambda r: seen.append(r.url))
        control = isolated.evaluate(CLASSIFY_UPGRADED, [pngs, options])

        page = context.new_page()
        page.route(sdk_server.url + BLANK, strip_isolation)
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(sdk_server.url + BLANK)
        out = page.evaluate(CLASSIFY_UPGRADED, [pngs, options])
    assert control["isolated"] and litert_requests(seen), "control: the isolated page tries LiteRT.js"
    assert control["upgrade"]["state"] in {"switched", "kept"}

    assert out["isolated"] is False
    assert out["upgrade"]["state"] == "skipped" and "crossOriginIsolated" in out["upgrade"]["reason"]
    assert not litert_requests(requests), litert_requests(requests)
    assert {a["engine"] for a in out["answers"]} == {"tfjs"}
    assert count_correct(sample, out["answers"]) >= 9


def test_thousand_litert_predictions_no_heap_growth(sdk_server, digit_pngs):
    """1,000 classify calls on LiteRT.js: no live tensor left, the wasm heap does not grow
    (bound: 1 MiB, i.e. 16 wasm pages), the answer never changes."""
    script = """
    async ([b64]) => {
      const { BrowserML } = await import('/sdk/browserml.js');
      const clf = await BrowserML.load({ model: 'digits', shared: false, litert: 'force', remember: false });
      const blob = new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: 'image/png' });
      await clf.classify(blob);
      await clf.upgraded();
      await clf.classify(blob);
      const before = clf.stats().memory;
      const labels = new Set();
      const engines = new Set();
      for (let i = 0; i < 1000; i += 1) {
        const a = await clf.classify(blob);
        labels.add(a.labels[0].label);
        engines.add(a.engine);
      }
      const stats = clf.stats();
      return { before, after: stats.memory, labels: [...labels], engines: [...engines],
               checks: stats.memoryChecks };
    }
    """
    digit, png = digit_pngs[42]
    with launch_browser() as context:
        page = open_blank(context, sdk_server.url)
        out = page.evaluate(script, [b64(png)])
    assert out["engines"] == ["litert"]
    assert out["labels"] == [str(digit)]
    assert out["before"]["numTensors"] == 0 and out["after"]["numTensors"] == 0
    assert out["before"]["wasmHeapBytes"] > 0
    assert out["after"]["wasmHeapBytes"] - out["before"]["wasmHeapBytes"] <= 1 << 20, out
    assert out["checks"] >= 10


def test_int8_agrees_with_float32_on_test_digits(sdk_server, digits_run):
    """500 held-out MNIST digits through LiteRT.js tflite-int8 and tflite-float32 in the same page:
    top-1 agreement >= 99%."""
    test = np.load(digits_run / "test.npz")
    images = test["images"][:500, ..., 0]
    script = """
    async ([pixels, n, side]) => {
      const { BrowserML } = await import('/sdk/browserml.js');
      const gray = Uint8Array.from(atob(pixels), (c) => c.charCodeAt(0));
      const inputs = [];
      for (let i = 0; i < n; i += 1) {
        const rgba = new Uint8ClampedArray(side * side * 4);
        for (let p = 0; p < side * side; p += 1) {
          const v = gray[i * side * side + p];
          rgba[4 * p] = v; rgba[4 * p + 1] = v; rgba[4 * p + 2] = v; rgba[4 * p + 3] = 255;
        }
        inputs.push(new ImageData(rgba, side, side));
      }
      const top1 = {};
      for (const variant of ['tflite-int8', 'tflite-float32']) {
        const clf = await BrowserML.load({
          model: 'digits', shared: false, litert: 'force', remember: false, variants: ['uint8', variant] });
        await clf.classify(inputs[0]);
        await clf.upgraded();
        const answers = await clf.classifyBatch(inputs, { topK: 1 });
        top1[variant] = answers.map((a) => [a.engine, a.variant, a.labels[0].label]);
        await clf.dispose();
      }
      return top1;
    }
    """
    pixels = b64(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    with launch_browser() as context:
        page = open_blank(context, sdk_server.url)
        out = page.evaluate(script, [pixels, len(images), images.shape[1]])
    int8, f32 = out["tflite-int8"], out["tflite-float32"]
    assert {tuple(a[:2]) for a in int8} == {("litert", "tflite-int8")}
    assert {tuple(a[:2]) for a in f32} == {("litert", "tflite-float32")}
    agree = sum(a[2] == b[2] for a, b in zip(int8, f32, strict=True))
    assert agree >= 495, f"{agree}/500 agree"
    correct = sum(a[2] == str(label) for a, label in zip(f32, test["labels"][:500], strict=True))
    assert correct >= 450, f"float32 on LiteRT.js: {correct}/500"



def test_cold_visit_prefetches_litert_without_starting_it(sdk_server, digit_pngs):
    """Cold visits (nothing remembered) on an isolated page fetch LiteRT.js's module code beside
    the manifest request (issue 18), not its wasm. Where the start policy then picks TF.js (the
    tiny digits model) LiteRT.js is never started: no wasm request, TF.js answers, the upgrade
    does not measure LiteRT.js, `load.early` says the prefetch was not used. Held to the TFLite
    variant, the same cold visit answers on LiteRT.js and says the prefetch was used."""
    sample = digit_pngs[::20]
    pngs = [b64(png) for _, png in sample]
    with launch_browser() as context:
        page = open_blank(context, sdk_server.url)
        seen: list[str] = []
        page.on("request", lambda r: seen.append(r.url))
        tfjs = page.evaluate(CLASSIFY_UPGRADED, [pngs, {"remember": False}])
        wasm = [u for u in seen if u.endswith(".wasm") and "/@litertjs/" in u]
        litert = page.evaluate(CLASSIFY_UPGRADED, [pngs, {"remember": False, "variants": ["tflite-int8"]}])
    assert tfjs["isolated"]
    early = tfjs["stats"]["load"]["early"]
    assert early["engine"] == "litert" and early["mode"] == "prefetch"
    assert early["ok"] and early["bytes"] > 10_000 and early["used"] is False, early
    assert any(u.endswith("/@litertjs/core/dist/index.js") for u in seen), "LiteRT.js's module was fetched"
    assert not wasm, f"LiteRT.js's wasm is not fetched when TF.js starts: {wasm}"
    assert {a["engine"] for a in tfjs["answers"]} == {"tfjs"}
    assert tfjs["upgrade"]["state"] == "skipped", tfjs["upgrade"]
    assert count_correct(sample, tfjs["answers"]) >= 4

    early = litert["stats"]["load"]["early"]
    assert early["mode"] == "prefetch" and early["ok"] and early["used"] is True, early
    assert {(a["engine"], a["variant"]) for a in litert["answers"]} == {("litert", "tflite-int8")}
    assert count_correct(sample, litert["answers"]) >= 4
    assert not litert["stats"]["fallbacks"]
