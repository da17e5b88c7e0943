"""Stage a static BrowserML tree for a machine with no network and no Python deps (issue 18):
the SDK, the vendored runtimes it loads, the GPU bench page + driver, and published models as
plain files (``/v1/models/<name>/manifest`` and ``/v1/blobs/<sha256>``, the layout the SDK's
loader reads), so any static server with COOP/COEP serves them.

    .venv/bin/python benchmarks/gpu/stage.py OUT --model mnv2=build/mnv2-224:uint8,tflite-int8 ...
        [--runtimes] [--pages]

A model's variant list keeps the manifest to those variants (and their blobs), to fit transfer
limits. The models are published into a throwaway registry and read back through our real server,
so the files are byte for byte what a browser gets from it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import urllib.request
from pathlib import Path

from browserml.registry import Registry
from browserml.server.run import start_in_thread
from browserml.settings import PROJECT_ROOT, Settings

HERE = Path(__file__).resolve().parent
RUNTIME_FILES = [
    "@tensorflow/tfjs/dist/tf.min.js",
    "@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js",
    "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm",
    "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm",
    "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm",
    "@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js",
    "@litertjs/core/dist/index.js",
    "@litertjs/core/wasm/litert_wasm_threaded_internal.js",
    "@litertjs/core/wasm/litert_wasm_threaded_internal.wasm",
    "@litertjs/core/wasm/litert_wasm_internal.js",
    "@litertjs/core/wasm/litert_wasm_internal.wasm",
    "@litertjs/wasm-utils/dist/index.js",
]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def stage_models(out: Path, models: list[tuple[str, Path, list[str]]]) -> None:
    """Publish each build, read its manifest and blobs back over HTTP, write them as files."""
    with tempfile.TemporaryDirectory(prefix="browserml-stage-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        with Registry(settings) as registry:
            for name, build, _ in models:
                registry.publish(build, name, channel="stable")
        server = start_in_thread(settings)
        try:
            for name, _, keep in models:
                manifest = json.loads(get(f"{server.url}/v1/models/{name}/manifest?channel=stable"))
                if keep:
                    manifest["variants"] = [v for v in manifest["variants"] if v["name"] in keep]
                target = out / "v1" / "models" / name
                target.mkdir(parents=True, exist_ok=True)
                (target / "manifest").write_text(json.dumps(manifest))
                # the SDK's loader reads /v1/models/<name>/channels/<channel>.json (static-host layout)
                (target / "channels").mkdir(exist_ok=True)
                (target / "channels" / "stable.json").write_text(json.dumps(manifest))
                for variant in manifest["variants"]:
                    for f in variant["files"]:
                        blob = out / f["url"].lstrip("/")
                        blob.parent.mkdir(parents=True, exist_ok=True)
                        if not blob.exists():
                            blob.write_bytes(get(server.url + f["url"]))
                print(name, [v["name"] for v in manifest["variants"]])
        finally:
            server.stop()


def stage_runtimes(out: Path, node_modules: Path) -> None:
    """The SDK (sdk/src) and the vendored runtime files it loads."""
    shutil.copytree(PROJECT_ROOT / "sdk" / "src", out / "sdk", dirs_exist_ok=True)
    for rel in RUNTIME_FILES:
        dest = out / "vendor" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(node_modules / rel, dest)


def stage_pages(out: Path) -> None:
    """The bench page and the device-side driver."""
    (out / "bench").mkdir(parents=True, exist_ok=True)
    for name in ("bench.html", "bench.js", "driver.py", "device.sh"):
        shutil.copyfile(HERE / name, out / "bench" / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the web tree into")
    parser.add_argument("--model", action="append", default=[],
                        help="NAME=BUILD_DIR[:variant,variant...] (repeatable)")
    parser.add_argument("--runtimes", action="store_true", help="also the SDK and vendored runtimes")
    parser.add_argument("--pages", action="store_true", help="also the bench page and driver")
    parser.add_argument("--node-modules", type=Path, default=PROJECT_ROOT / "node_modules",
                        help="where the vendored runtimes are installed")
    args = parser.parse_args()
    models = []
    for spec in args.model:
        name, rest = spec.split("=", 1)
        build, _, keep = rest.partition(":")
        models.append((name, Path(build), [k for k in keep.split(",") if k]))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.runtimes:
        stage_runtimes(args.out, args.node_modules)
    if args.pages:
        stage_pages(args.out)
    if models:
        stage_models(args.out, models)


if __name__ == "__main__":
    main()
