"""Where LiteRT.js int8 gains and where it does not (issue 8): the trained reference CNN split into
its conv stack and its dense head, each exported to TFLite float32 and full-integer int8 exactly
as ``browserml convert`` does, timed in LiteRT.js (headless Chromium, crossOriginIsolated, 2
threads) and in native LiteRT (XNNPACK, 2 threads) in one run, with the int8 / float32 ratio of
each side. The page also reports the SDK's relaxed-SIMD int8 dot probe (``int8Dot``): where it
says "none" XNNPACK runs int8 without dot-product kernels in the browser.

Needs a trained CNN run (``runs/cnn224`` from ``benchmarks/bench_convert.py``). Run from the repo
root:

    .venv/bin/python benchmarks/bench_int8.py --run runs/cnn224
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from browserml.bench.native import native_litert
from browserml.browser import launch_browser, open_page, serve_local_files, vendor_mounts
from browserml.progress import progress_bar
from browserml.settings import PROJECT_ROOT, get_settings
from browserml.tflite import converter_for, saved_model

PAGE = """<!doctype html><meta charset="utf-8">
<script type="importmap">
{"imports": {"@litertjs/wasm-utils": "/vendor/@litertjs/wasm-utils/dist/index.js"}}
</script>
<script type="module" onerror="window.browsermlLoadFailed = 'page module'">
import { loadLiteRt, loadAndCompile, Tensor } from '/vendor/@litertjs/core/dist/index.js';
import { wasmFeatures } from '/sdk/device.js';
const ready = loadLiteRt('/vendor/@litertjs/core/wasm/', { threads: true });
window.features = wasmFeatures();
window.timeModel = async (file, shape, n) => {
  await ready;
  const model = await loadAndCompile('/models/' + file,
    { accelerator: 'wasm', cpuOptions: { numThreads: 2 } });
  const size = shape.reduce((a, b) => a * b, 1);
  const pixels = new Float32Array(size).map(() => Math.floor(Math.random() * 256));
  const run = async () => {
    const input = new Tensor(pixels, shape);
    const out = await model.run([input]);
    input.delete();
    out[0].toTypedArray();
    for (const t of out) t.delete();
  };
  for (let i = 0; i < 5; i += 1) await run();
  const times = [];
  for (let i = 0; i < n; i += 1) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  model.delete();
  return times;
};
window.ready = true;
</script>
"""


def split_model(model):
    """Given the reference CNN, return (conv stack up to Flatten, dense head after it)."""
    import keras

    flatten = next(i for i, layer in enumerate(model.layers) if isinstance(layer, keras.layers.Flatten))
    inputs = keras.Input(model.input_shape[1:])
    x = inputs
    for layer in model.layers[:flatten]:
        x = layer(x)
    conv = keras.Model(inputs, x)
    features = keras.Input((int(np.prod(conv.output_shape[1:])),))
    y = features
    for layer in model.layers[flatten + 1:]:
        y = layer(y)
    return conv, keras.Model(features, y)


def export_parts(run_dir: Path, out: Path) -> dict[str, tuple[list[int], dict[str, Path]]]:
    """Write float32 and int8 TFLite files of the whole model and of each part; return
    {part: (input shape, {variant: path})}."""
    import keras

    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    with np.load(run_dir / "calib.npz") as calib:
        images = calib["images"][:64].astype(np.float32)
    conv, dense = split_model(model)
    parts = {"whole model": (model, images), "conv stack": (conv, images),
             "dense head": (dense, conv.predict(images, verbose=0).reshape(len(images), -1))}
    written = {}
    with progress_bar() as bar:
        task = bar.add_task("export", total=2 * len(parts), status="")
        for name, (keras_model, calibration) in parts.items():
            saved = saved_model(keras_model, out / f"{name}-saved".replace(" ", "-"))
            files = {}
            for variant in ("tflite-float32", "tflite-int8"):
                bar.update(task, status=f"{name} {variant}")
                path = out / f"{name.replace(' ', '-')}-{variant}.tflite"
                path.write_bytes(converter_for(saved, variant, calibration).convert())
                files[variant] = path
                bar.advance(task)
            written[name] = ([1, *keras_model.input_shape[1:]], files)
    return written


def time_in_browser(parts: dict, folder: Path, n: int) -> tuple[dict, dict]:
    """Median ms of every part and variant in LiteRT.js, and the page's wasm features."""
    (folder / "index.html").write_text(PAGE)
    mounts = {"/models/": folder, "/sdk/": get_settings().sdk_dir,
              **vendor_mounts(["@litertjs/core", "@litertjs/wasm-utils"])}
    medians = {}
    with serve_local_files(mounts) as origin, launch_browser() as context:
        page = open_page(context, f"{origin}/models/index.html", "window.ready === true")
        features = page.evaluate("window.features")
        for name, (shape, files) in parts.items():
            for variant, path in files.items():
                times = page.evaluate("([f, s, n]) => timeModel(f, s, n)", [path.name, shape, n])
                medians[(name, variant)] = statistics.median(times)
    return medians, features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=PROJECT_ROOT / "runs" / "cnn224",
                        help="trained reference CNN run directory (model.keras, calib.npz)")
    parser.add_argument("--n", type=int, default=40, help="timed calls per part and variant")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        folder = Path(tmp)
        parts = export_parts(args.run, folder)
        browser, features = time_in_browser(parts, folder, args.n)
        native = {(name, variant): statistics.median(native_litert(path, tuple(shape[1:]), 1, args.n))
                  for name, (shape, files) in parts.items() for variant, path in files.items()}
    print(f"\nrelaxed-SIMD int8 dot product in this browser: {features.get('int8Dot')}\n")
    print("| part | LiteRT.js float32 | LiteRT.js int8 | int8 / float32 | native float32 | native int8 "
          "| int8 / float32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for name in parts:
        b32, b8 = browser[(name, "tflite-float32")], browser[(name, "tflite-int8")]
        n32, n8 = native[(name, "tflite-float32")], native[(name, "tflite-int8")]
        rows.append({"part": name, "browser_ms": [b32, b8], "native_ms": [n32, n8]})
        print(f"| {name} | {b32:.2f} ms | {b8:.2f} ms | {b8 / b32:.2f}x | {n32:.2f} ms | {n8:.2f} ms "
              f"| {n8 / n32:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"features": features, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
