"""The SDK side of a bench run: our server serving the build, the SDK choosing by itself.

Measures what a user of ``BrowserML.load`` gets: load time on a cold visit (fresh profile) and a
repeat visit (files from the Cache API), the first prediction, the automatically chosen
(engine, backend, variant) and its latency through ``classify`` (preprocessing included), and a
soak of N predictions with ``tf.memory().numTensors`` and the JS heap (after forced GC) compared.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from ..browser import launch_browser
from ..registry import Registry
from ..server.run import start_in_thread
from ..settings import Settings
from ..variants import Build

PAGE = "/demo/bench.html"
NAME = "bench"

LOAD_AND_TIME = """
async ([model, n, shape]) => {
  const { BrowserML } = await import('/sdk/browserml.js');
  const t0 = performance.now();
  const clf = await BrowserML.load({ model, shared: false });
  const loadMs = performance.now() - t0;
  // The SDK answers on TF.js first and may upgrade to LiteRT.js in idle time; time what it
  // settles on, since that is what a page gets from then on.
  const u0 = performance.now();
  if (typeof clf.upgraded === 'function') await clf.upgraded();
  const upgradeMs = performance.now() - u0;
  const [h, w] = shape;
  const pixels = new Uint8ClampedArray(w * h * 4);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i % 4 === 3) ? 255 : Math.floor(Math.random() * 256);
  const image = new ImageData(pixels, w, h);
  const f0 = performance.now();
  await clf.classify(image);
  const firstMs = performance.now() - f0;
  const times = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now(); await clf.classify(image); times.push(performance.now() - t);
  }
  const s = clf.stats();
  await clf.dispose();
  return { loadMs, firstMs, upgradeMs, times, engine: s.engine, backend: s.backend,
           variant: s.variant, threads: s.threads, load: s.load };
}
"""

SOAK_SETUP = """
async ([model, shape]) => {
  const { BrowserML } = await import('/sdk/browserml.js');
  window.clf = await BrowserML.load({ model, shared: false });
  if (typeof clf.upgraded === 'function') await clf.upgraded();
  const [h, w] = shape;
  const pixels = new Uint8ClampedArray(w * h * 4).fill(128);
  window.image = new ImageData(pixels, w, h);
  for (let i = 0; i < 20; i++) await clf.classify(image);
  window.soak = async (n) => {
    const before = tf.memory().numTensors;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await clf.classify(image);
    const s = clf.stats();
    return { before, after: tf.memory().numTensors, ms: performance.now() - t0,
             backend: s.backend, engine: s.engine, rebuilds: s.rebuilds };
  };
}
"""


def timed_visit(page, url: str, shape: list[int], n: int) -> dict:
    """Load the SDK page and run LOAD_AND_TIME; return its result."""
    page.goto(url + PAGE)
    return page.evaluate(LOAD_AND_TIME, [NAME, n, shape])


def soak(context, url: str, shape: list[int], predictions: int, model: str = NAME) -> dict:
    """Run ``predictions`` classifications of ``model``; return tensor and heap drift (heap
    measured after a forced GC through the DevTools protocol) and the time per prediction."""
    page = context.new_page()
    page.goto(url + PAGE)
    page.evaluate(SOAK_SETUP, [model, shape])
    cdp = context.new_cdp_session(page)
    cdp.send("HeapProfiler.collectGarbage")
    heap_before = cdp.send("Runtime.getHeapUsage")["usedSize"]
    result = page.evaluate("(n) => soak(n)", predictions)
    cdp.send("HeapProfiler.collectGarbage")
    heap_after = cdp.send("Runtime.getHeapUsage")["usedSize"]
    page.close()
    return {"predictions": predictions, "tensor_drift": result["after"] - result["before"],
            "heap_growth_mb": (heap_after - heap_before) / 1e6,
            "ms_per_prediction": result["ms"] / predictions, "backend": result["backend"],
            "engine": result["engine"], "rebuilds": result["rebuilds"]}


def bench_sdk(build_dir: Path, build: Build, n: int, soak_predictions: int) -> dict:
    """Publish the build into a throwaway registry, serve it, and measure the SDK (see module
    docstring). Returns plain figures for the report."""
    shape = [build.input.height, build.input.width, build.input.channels]
    with tempfile.TemporaryDirectory(prefix="browserml-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        with Registry(settings) as registry:
            registry.publish(build_dir, NAME, channel="stable")
        with start_in_thread(settings) as server, launch_browser() as context:
            page = context.new_page()
            cold = timed_visit(page, server.url, shape, n)
            cached = timed_visit(page, server.url, shape, n)
            page.close()
            soaked = soak(context, server.url, shape, soak_predictions) if soak_predictions else None
    return {
        "choice": {k: cold[k] for k in ("engine", "backend", "variant", "threads")},
        "cold": {"load_ms": cold["loadMs"], "first_prediction_ms": cold["firstMs"],
                 "upgrade_ms": cold["upgradeMs"]},
        "cached": {"load_ms": cached["loadMs"], "first_prediction_ms": cached["firstMs"]},
        "cached_over_cold_load": cached["loadMs"] / cold["loadMs"],
        "median_ms": statistics.median(cold["times"] + cached["times"]),
        "soak": soaked,
    }
