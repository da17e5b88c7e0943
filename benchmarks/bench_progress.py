"""What load progress costs (issue 19), in headless Chromium against a real server.

The SDK reads a model file's body with a stream reader (BYOB, at most 256 KiB a read, straight
into the file's buffer) when someone listens for progress, and with one ``arrayBuffer()`` when
nobody does. This times ``loadVariantFiles`` — fetch, read, sha256 and size check of every file,
the Cache API off so every round hits the network — on the same page and model both ways,
alternated A B B A, and prints the medians and their ratio (with progress / without), plus how
many progress events arrived and the largest gap between two of them.

The model is the synthetic dense build of ``browserml.bench.synthetic`` (``--units 8000``: 25.4 MB;
``--units 32000``: 101 MB, about the reference CNN's 103 MB float32). Run from the repo root:

    .venv/bin/python benchmarks/bench_progress.py --units 8000 --rounds 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from browserml.bench.harness import abba
from browserml.bench.synthetic import write_dense_build
from browserml.browser import launch_browser
from browserml.registry import Registry
from browserml.server.run import start_in_thread
from browserml.settings import Settings

LOAD_FILES = """
async (withProgress) => {
  const { fetchManifest, loadVariantFiles } = await import('/sdk/loader.js');
  const { LoadProgress } = await import('/sdk/progress.js');
  const { manifest } = await fetchManifest({ server: location.origin, model: 'digits' });
  const variant = manifest.variants.find((v) => v.name === 'float32');
  const events = [];
  const record = (e) => { if (e.phase === 'download') events.push(e.overall.loaded); };
  const progress = withProgress ? new LoadProgress(record) : null;
  const t0 = performance.now();
  const report = await loadVariantFiles(variant, { server: location.origin, cache: null, progress });
  const ms = performance.now() - t0;
  let gap = 0;
  events.reduce((prev, v) => { gap = Math.max(gap, v - prev); return v; }, 0);
  return { ms, bytes: report.bytesFetched, events: events.length, gap };
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=8000, help="Dense units (8000: 25.4 MB).")
    parser.add_argument("--rounds", type=int, default=8, help="Loads each way, alternated A B B A.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-progress-") as tmp:
        build = write_dense_build(Path(tmp) / "build", units=args.units)
        settings = Settings(data_dir=Path(tmp) / "data")
        with Registry(settings) as registry:
            registry.publish(build, "digits")
        server = start_in_thread(settings)
        runs: dict[bool, list[dict]] = {True: [], False: []}
        try:
            with launch_browser() as context:
                page = context.new_page()
                page.goto(server.url + "/demo/bench.html")
                page.evaluate(LOAD_FILES, False)  # warm: server blob cache, page, modules
                for _, with_progress in abba([True, False], repeats=args.rounds):
                    runs[with_progress].append(page.evaluate(LOAD_FILES, with_progress))
        finally:
            server.stop()
    on = statistics.median(r["ms"] for r in runs[True])
    off = statistics.median(r["ms"] for r in runs[False])
    result = {
        "bytes": runs[True][0]["bytes"], "loads_each": len(runs[True]),
        "median_ms_with_progress": round(on, 1), "median_ms_without": round(off, 1),
        "ratio_with_over_without": round(on / off, 3),
        "progress_events": runs[True][0]["events"], "largest_gap_bytes": max(r["gap"] for r in runs[True]),
    }
    print(json.dumps(result, indent=2))
    print(f"{result['bytes'] / 1e6:.1f} MB, {len(runs[True])} loads each way: with progress "
          f"{on:.0f} ms, without {off:.0f} ms median -> {on / off:.2f}x; "
          f"{result['progress_events']} events, largest gap {result['largest_gap_bytes']:,} bytes")


if __name__ == "__main__":
    main()
