"""Engines benchmark (issue 8): the SDK's automatic (engine, backend, variant) against every allowed
candidate and against TF.js as a page would start it, in headless Chromium against a real server.

For each build (default: ``build/digits`` and, when present, ``build/cnn224``):

1. every candidate forced through the SDK — TF.js x {wasm, webgl, cpu} (one TF.js variant: TF.js
   dequantizes uint8/float16 weights to float32 at load, so they compute alike), TF.js wasm with
   ``threads: 2``, LiteRT.js x {tflite-int8, tflite-float16, tflite-float32} — median ms of
   ``classify(ImageData)`` at the model's input size;
2. the SDK's automatic choice after its LiteRT.js upgrade, with int8 allowed and with float32
   only (no tflite-int8), and its ratio to the fastest allowed candidate (target <= 1.05x);
3. TF.js's default start on the same page and files: ``tf.min.js`` with the backend it picks
   (webgl here), and the wasm backend as it starts (1 thread on 2 cores) — the issue's baseline;
4. cold time to first prediction (fresh profile, navigation start -> first answer) for the SDK
   (auto) and for single-engine pages (the SDK held to TF.js wasm, or to LiteRT.js wasm: only that
   runtime loads), A B C .. C B A, plus the repeat visit after the upgrade; with
   ``--compare-sdk DIR`` also another SDK tree (e.g. an older commit's ``sdk/src``) served by a
   second server on the same registry, its visits interleaved with the others.

Every candidate runs in its own page, in A B .. B A order over the rounds, for at least
``--min-ms`` and ``--predictions`` calls; its figure is the median of the rounds' medians.
Ratios are measured in one run. Run from the repo root:

    .venv/bin/python benchmarks/bench_engines.py --builds build/digits build/cnn224 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from browserml.bench.harness import abba
from browserml.browser import launch_browser
from browserml.registry import Registry
from browserml.server.run import BackgroundServer, start_in_thread
from browserml.settings import PROJECT_ROOT, Settings
from browserml.variants import read_build

PAGE = "/demo/bench.html"

# At least n calls and at least minMs of timing (a 10 ms candidate gets ~100 samples, so its
# median is as steady as a slow one's), cut short past budgetMs, never fewer than 5 calls.
KEEP_TIMING = """
window.keepTiming = (count, elapsed, n, minMs, budgetMs) =>
  !(count >= 5 && elapsed > budgetMs) && (count < n || elapsed < minMs);
"""

# Random pixels at the model's input size, one classifier, timed classify calls after warm-up;
# `upgrade` waits for the LiteRT.js verdict first.
SDK_TIMING = """
async ([model, options, n, minMs, budgetMs, upgrade]) => {
  const { BrowserML } = await import('/sdk/browserml.js');
  const clf = await BrowserML.load({ model, shared: false, remember: false, ...options });
  const { height, width } = clf._impl.manifest.input;
  const rgba = new Uint8ClampedArray(width * height * 4)
    .map((_, i) => (i % 4 === 3 ? 255 : (i * 7919) % 256));
  const img = new ImageData(rgba, width, height);
  await clf.classify(img);
  const up = upgrade ? await clf.upgraded() : null;
  for (let i = 0; i < 2; i += 1) await clf.classify(img);
  const times = [];
  const t0 = performance.now();
  while (keepTiming(times.length, performance.now() - t0, n, minMs, budgetMs)) {
    const a = performance.now();
    await clf.classify(img);
    times.push(performance.now() - a);
  }
  const s = clf.stats();
  await clf.dispose();
  times.sort((a, b) => a - b);
  return { ms: times[times.length >> 1], runs: times.length, engine: s.engine, backend: s.backend,
           variant: s.variant, threads: s.threads, upgrade: up && { state: up.state, reason: up.reason } };
}
"""

# TF.js as a page would start it: tf.min.js, the same verified files, the backend TF.js picks
# (or wasm as it starts), predict in tf.tidy on the same pixels, data() read each call.
TFJS_DEFAULT = """
async ([model, n, minMs, budgetMs, backend]) => {
  await import('/vendor/@tensorflow/tfjs/dist/tf.min.js');
  if (backend === 'wasm') {
    await import('/vendor/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js');
    tf.wasm.setWasmPaths('/vendor/@tensorflow/tfjs-backend-wasm/dist/');
    await tf.setBackend('wasm');
  }
  await tf.ready();
  const { fetchManifest, loadVariantFiles, buildArtifacts } = await import('/sdk/loader.js');
  const { manifest } = await fetchManifest({ server: location.origin, model });
  const variant = manifest.variants.find((v) => (v.engine || 'tfjs') === 'tfjs');
  const files = await loadVariantFiles(variant, { server: location.origin });
  const m = await tf.loadLayersModel(tf.io.fromMemory(buildArtifacts(variant, files.files)));
  const { height, width, channels } = manifest.input;
  const x = tf.randomUniform([1, height, width, channels || 3], 0, 255);
  const run = async () => { const y = m.predict(x); await y.data(); y.dispose(); };
  for (let i = 0; i < 3; i += 1) await run();
  const times = [];
  const t0 = performance.now();
  while (keepTiming(times.length, performance.now() - t0, n, minMs, budgetMs)) {
    const a = performance.now();
    await run();
    times.push(performance.now() - a);
  }
  times.sort((a, b) => a - b);
  return { ms: times[times.length >> 1], runs: times.length, backend: tf.getBackend(),
           threads: tf.getBackend() === 'wasm' ? tf.wasm.getThreadsCount() : null };
}
"""

FIRST_PREDICTION = """
async ([model, options]) => {
  const { BrowserML } = await import('/sdk/browserml.js');
  const clf = await BrowserML.load({ model, shared: false, ...options });
  const { height, width } = clf._impl.manifest.input;
  const img = new ImageData(new Uint8ClampedArray(width * height * 4).fill(128), width, height);
  const a = await clf.classify(img);
  const ttfp = performance.now();
  const load = clf.stats().load;
  const up = await clf.upgraded();
  return { ttfp, engine: a.engine, backend: a.backend, variant: a.variant, upgrade: up.state,
           after: clf.stats().engine + '/' + clf.stats().variant,
           load: { ms: load.ms, manifestMs: load.manifestMs, early: load.early || null } };
}
"""


def serve(build: Path, name: str, data_dir: Path) -> BackgroundServer:
    settings = Settings(data_dir=data_dir)
    with Registry(settings) as registry:
        registry.publish(build, name, channel="stable")
    return start_in_thread(settings)


def in_page(context, url: str, script: str, args: list) -> dict:
    page = context.new_page()
    try:
        page.goto(url + PAGE)
        return page.evaluate(script, args)
    finally:
        page.close()


def candidates(build: Path, with_cpu: bool) -> list[tuple[str, dict]]:
    """(label, SDK options) forcing each candidate the manifest offers (a variant over the
    accuracy budget is not offered, so the SDK could never run it)."""
    names = {v.name for v in read_build(build).variants if v.offered}
    tfjs_variant = next(v for v in ("uint8", "float16", "float32") if v in names)
    backends = ["wasm", "webgl"] + (["cpu"] if with_cpu else [])
    out = [(f"tfjs/{b}/{tfjs_variant}", {"backends": [b], "variants": [tfjs_variant], "litert": "off"})
           for b in backends]
    out.append((f"tfjs/wasm/{tfjs_variant} threads:2",
                {"backends": ["wasm"], "variants": [tfjs_variant], "litert": "off", "threads": 2}))
    for v in ("tflite-int8", "tflite-float16", "tflite-float32"):
        if v in names:
            out.append((f"litert/wasm/{v}", {"backends": ["wasm"], "variants": [tfjs_variant, v],
                                             "litert": "force"}))
    return out


def serve_sdk(sdk_dir: Path, data_dir: Path) -> BackgroundServer:
    """A second server on the same registry that serves another SDK tree at /sdk/."""
    return start_in_thread(Settings(data_dir=data_dir, sdk_dir=sdk_dir))


def cold_ttfp(url: str, model: str, options: dict) -> dict:
    with launch_browser() as context:
        page = context.new_page()
        page.goto(url + PAGE)
        cold = page.evaluate(FIRST_PREDICTION, [model, options])
        page.reload()
        repeat = page.evaluate(FIRST_PREDICTION, [model, options])
    return {"cold": cold, "repeat": repeat}


def jobs(build: Path, name: str, n: int, min_ms: int, budget_ms: int) -> list[tuple[str, str, list]]:
    """(row label, page script, its arguments) for one round of the engines benchmark."""
    timing = [n, min_ms, budget_ms]
    out = [(label, SDK_TIMING, [name, options, *timing, options.get("litert") == "force"])
           for label, options in candidates(build, with_cpu=name == "digits")]
    float_only = [v.name for v in read_build(build).variants if v.name != "tflite-int8"]
    out += [("sdk auto (int8 allowed)", SDK_TIMING, [name, {}, *timing, True]),
            ("sdk auto (float32 only)", SDK_TIMING, [name, {"variants": float_only}, *timing, True]),
            ("tfjs default start", TFJS_DEFAULT, [name, *timing, "default"]),
            ("tfjs wasm as it starts", TFJS_DEFAULT, [name, *timing, "wasm"])]
    return out


def timed_candidates(url: str, build: Path, name: str, rounds: int, n: int, min_ms: int,
                     budget_ms: int) -> dict[str, list[dict]]:
    """Every job of :func:`jobs`, once a round, each in a fresh page; the raw results by label."""
    rows: dict[str, list[dict]] = {}
    with launch_browser() as context:
        context.add_init_script(KEEP_TIMING)
        # A B .. B A: no candidate always runs first (cold page cache) or last (warmest CPU).
        for _round, (label, script, args) in abba(jobs(build, name, n, min_ms, budget_ms), rounds):
            rows.setdefault(label, []).append(in_page(context, url, script, args))
    return rows


# Single-engine pages (issue 18's cold-start baseline): the SDK held to one engine on wasm, so the
# page loads only that runtime, as a page written for that engine alone would.
SINGLE_ENGINE = [("tfjs wasm alone", {"engines": ["tfjs"], "backends": ["wasm"], "litert": "off"}),
                 ("litert wasm alone", {"engines": ["litert"], "backends": ["wasm"]})]


COMPARED = "sdk auto (compared)"


def cold_visits(url: str, name: str, rounds: int, compare_url: str | None = None) -> dict[str, list[dict]]:
    """Cold and repeat visits for the SDK as it ships, for each single-engine page and (with
    ``compare_url``) for the other SDK, alternating (A B C .. C B A) so machine drift does not
    favour any."""
    pair = [("sdk auto", {}, url), *((label, o, url) for label, o in SINGLE_ENGINE)]
    if compare_url:
        pair.insert(1, (COMPARED, {}, compare_url))
    visits: dict[str, list[dict]] = {label: [] for label, _, _ in pair}
    for _round, (label, options, at) in abba(pair, rounds):
        visits[label].append(cold_ttfp(at, name, options))
    return visits


def timing_summary(rows: dict[str, list[dict]]) -> dict:
    """Medians over the rounds and the ratios the issue's targets are stated in."""
    med = statistics.median
    summary = {label: {"ms": med(r["ms"] for r in runs), **{k: runs[-1].get(k) for k in
               ("engine", "backend", "variant", "threads", "upgrade")}} for label, runs in rows.items()}
    fixed = {k: v for k, v in summary.items() if not k.startswith(("sdk", "tfjs default", "tfjs wasm as"))}
    allowed_f32 = {k: v for k, v in fixed.items() if "int8" not in k}
    best = min(fixed.items(), key=lambda kv: kv[1]["ms"])
    best_f32 = min(allowed_f32.items(), key=lambda kv: kv[1]["ms"])
    auto, auto_f32 = summary["sdk auto (int8 allowed)"], summary["sdk auto (float32 only)"]
    default, wasm_start = summary["tfjs default start"], summary["tfjs wasm as it starts"]
    return {
        "rows": summary, "runs": rows,
        "fastest": best[0], "fastest_float32": best_f32[0],
        "auto_over_fastest": auto["ms"] / best[1]["ms"],
        "auto_f32_over_fastest_f32": auto_f32["ms"] / best_f32[1]["ms"],
        "speedup_vs_default": default["ms"] / auto["ms"],
        "speedup_f32_vs_default": default["ms"] / auto_f32["ms"],
        "speedup_vs_wasm_start": wasm_start["ms"] / auto["ms"],
        "speedup_f32_vs_wasm_start": wasm_start["ms"] / auto_f32["ms"],
    }


def ttfp_summary(visits: dict[str, list[dict]]) -> dict:
    """Median cold / repeat time to first prediction per setup, with every visit kept, and the
    SDK's cold time over the fastest single-engine page's (issue 18's target: <= 1.2x)."""
    med = statistics.median
    out = {label: {"cold_ms": med(v["cold"]["ttfp"] for v in runs),
                    "repeat_ms": med(v["repeat"]["ttfp"] for v in runs),
                    "cold_runs_ms": [round(v["cold"]["ttfp"]) for v in runs],
                    "cold_loads": [v["cold"].get("load") for v in runs],
                    "cold_engine": runs[-1]["cold"]["engine"], "after_upgrade": runs[-1]["cold"]["after"],
                    "repeat_engine": runs[-1]["repeat"]["engine"]} for label, runs in visits.items()}
    singles = [out[label]["cold_ms"] for label, _ in SINGLE_ENGINE if label in out]
    for label in ("sdk auto", COMPARED):
        if label in out and singles:
            out[label]["over_fastest_single_engine"] = out[label]["cold_ms"] / min(singles)
    return out


def bench_build(build: Path, rounds: int, n: int, min_ms: int, budget_ms: int,
                parts: tuple[str, ...] = ("timing", "ttfp"), compare_sdk: Path | None = None) -> dict:
    name = read_build(build).name
    report: dict = {"model": name}
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp, serve(build, name, Path(tmp)) as server:
        if "timing" in parts:
            report |= timing_summary(timed_candidates(server.url, build, name, rounds, n, min_ms, budget_ms))
        if "ttfp" in parts and compare_sdk:
            with serve_sdk(compare_sdk, Path(tmp)) as other:
                report["ttfp"] = ttfp_summary(cold_visits(server.url, name, rounds, other.url))
            report["compared_sdk"] = str(compare_sdk)
        elif "ttfp" in parts:
            report["ttfp"] = ttfp_summary(cold_visits(server.url, name, rounds))
    return report


def print_table(report: dict) -> None:
    print(f"\n### {report['model']}\n")
    if "rows" in report:
        print("| candidate | median ms | engine/backend/variant | threads |")
        print("| --- | ---: | --- | ---: |")
        for label, row in report["rows"].items():
            what = f"{row.get('engine') or 'tfjs'}/{row['backend']}/{row.get('variant') or ''}"
            print(f"| {label} | {row['ms']:.2f} | {what} | {row.get('threads')} |")
        print()
        print(f"- SDK auto / fastest allowed ({report['fastest']}): {report['auto_over_fastest']:.2f}x; "
              f"float32 only / fastest float32 ({report['fastest_float32']}): "
              f"{report['auto_f32_over_fastest_f32']:.2f}x")
        print(f"- speed-up vs TF.js default start: {report['speedup_vs_default']:.1f}x (int8 allowed), "
              f"{report['speedup_f32_vs_default']:.1f}x (float32 only); vs TF.js wasm as it starts: "
              f"{report['speedup_vs_wasm_start']:.1f}x / {report['speedup_f32_vs_wasm_start']:.1f}x")
    for k, v in report.get("ttfp", {}).items():
        print(f"- cold time to first prediction, {k}: {v['cold_ms']:.0f} ms (each visit: "
              f"{', '.join(map(str, v['cold_runs_ms']))}; answered by {v['cold_engine']}, then "
              f"{v['after_upgrade']}); repeat visit {v['repeat_ms']:.0f} ms on {v['repeat_engine']}")
        if "over_fastest_single_engine" in v:
            print(f"  - SDK cold / fastest single-engine page: {v['over_fastest_single_engine']:.2f}x "
                  "(target <= 1.2x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=Path, nargs="+",
                        default=[PROJECT_ROOT / "build" / b for b in ("digits", "cnn224")
                                 if (PROJECT_ROOT / "build" / b / "variants.json").is_file()])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--predictions", type=int, default=30)
    parser.add_argument("--min-ms", type=int, default=1000,
                        help="time each candidate for at least this long as well as --predictions calls")
    parser.add_argument("--budget-ms", type=int, default=4000, help="stop timing a candidate after this")
    parser.add_argument("--parts", default="timing,ttfp",
                        help="what to measure: timing (every candidate), ttfp (cold visits), or both")
    parser.add_argument("--compare-sdk", type=Path, metavar="DIR",
                        help="ttfp: also cold-visit this SDK tree (an sdk/src folder, e.g. from "
                             "'git archive' of an older commit), interleaved, as 'sdk auto (compared)'")
    parser.add_argument("--json", type=Path, help="also write the full report here")
    args = parser.parse_args()
    parts = tuple(p.strip() for p in args.parts.split(","))
    if not set(parts) <= {"timing", "ttfp"}:
        parser.error(f"--parts takes timing and/or ttfp, not {args.parts!r}")
    if args.compare_sdk and not (args.compare_sdk / "browserml.js").is_file():
        parser.error(f"--compare-sdk {args.compare_sdk}: no browserml.js there; give an SDK's src folder")
    reports = [bench_build(b, args.rounds, args.predictions, args.min_ms, args.budget_ms, parts,
                           args.compare_sdk) for b in args.builds]
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1))
    for report in reports:
        print_table(report)


if __name__ == "__main__":
    main()
