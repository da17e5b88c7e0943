"""Where LiteRT.js int8 gains and where it does not (issue 8): the trained reference CNN split into
its conv stack and its dense head, each exported to TFLite float32 and full-integer int8 exactly
as ``browserml convert`` does, timed in LiteRT.js (headless Chromium, crossOriginIsolated, 2
threads) and in native LiteRT (XNNPACK, 2 threads) in one run, with the int8 / float32 ratio of
each side. The bench page also reports the SDK's relaxed-SIMD int8 dot probe (``int8Dot``): where it
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

from browserml.bench.harness import BENCH_PACKAGES, STATIC, Config, run_page
from browserml.bench.native import native_litert
from browserml.browser import launch_browser, serve_local_files, vendor_mounts
from browserml.progress import progress_bar
from browserml.settings import PROJECT_ROOT, get_settings
from browserml.tflite import converter_for, saved_model


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
                path = out / f"{name.replace(' ', '-')}-{variant}" / "model.tflite"
                path.parent.mkdir()
                path.write_bytes(converter_for(saved, variant, calibration).convert())
                files[variant] = path
                bar.advance(task)
            written[name] = ([1, *keras_model.input_shape[1:]], files)
    return written


def time_in_browser(parts: dict, folder: Path, n: int) -> tuple[dict, dict]:
    """Median ms of every part and variant in LiteRT.js, each in a fresh page of the harness's
    own bench page (``browserml bench``'s LiteRT.js loop), and the page's wasm features."""
    mounts = {"/static/": STATIC, "/sdk/": get_settings().sdk_dir, "/model/": folder,
              **vendor_mounts(BENCH_PACKAGES)}
    medians, features = {}, {}
    with serve_local_files(mounts) as origin, launch_browser() as context:
        for name, (shape, files) in parts.items():
            for variant, path in files.items():
                config = Config("litert", "wasm", path.parent.name, 1)
                result = run_page(context, origin, config, shape[1:], n, budget_ms=60_000)
                medians[(name, variant)] = statistics.median(result["times"])
                features = result["env"]
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
