"""Shared fixtures. Add new fixtures; never rename existing ones (several suites use them)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from browserml.bench.synthetic import SYNTHETIC_CHECK
from browserml.server.run import BackgroundServer, start_in_thread
from browserml.settings import Settings
from browserml.variants import Build, InputSpec, Variant, describe_file, write_build

DEFAULT_TEST_DATABASE_URL = "postgresql://browserml:browserml@127.0.0.1:5432/browserml_test"


# ------------------------------------------------------------------ databases (registry, issue 3)


def postgres_url() -> str:
    """The PostgreSQL the tests use: BROWSERML_TEST_DATABASE_URL or the local default."""
    return os.environ.get("BROWSERML_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema, dropped afterwards.

    Unreachable PostgreSQL is a test failure, never a skip: the PostgreSQL registry is a feature."""
    import psycopg

    base = postgres_url()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test (see :func:`fresh_schema`)."""
    with fresh_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Run the test once on SQLite (None: the data dir's file) and once on PostgreSQL."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_schema_url")


def server_settings(root: Path, **overrides: object) -> Settings:
    """Settings for a server in ``root``: a fresh data dir, a stub SDK and demo page, one CORS
    origin allowed; ``overrides`` replace any field."""
    sdk = root / "sdk"
    sdk.mkdir()
    (sdk / "browserml.js").write_text("export const version = '0.1.0';\n")
    demo = root / "web" / "demo"
    demo.mkdir(parents=True)
    (demo / "index.html").write_text("<!doctype html><title>demo</title>\n")
    fields = {"data_dir": root / "data", "sdk_dir": sdk, "web_dir": root / "web",
              "cors_origins": ["https://allowed.example"], **overrides}
    return Settings(**fields)


@pytest.fixture
def registry_settings(tmp_path: Path, database_url: str | None) -> Settings:
    """Settings for a registry in a fresh data dir, on the parametrised database."""
    return server_settings(tmp_path, database_url=database_url)


# ------------------------------------------------------------------ synthetic builds


def _dense_model_json(weights: list[dict], shard: str) -> dict:
    """A minimal TF.js layers model.json: Dense(3) on 4 inputs, weights in one shard."""
    return {
        "format": "layers-model",
        "generatedBy": "browserml-tests",
        "convertedBy": None,
        "modelTopology": {
            "class_name": "Sequential",
            "config": {
                "name": "tiny",
                "layers": [
                    {
                        "class_name": "Dense",
                        "config": {
                            "name": "dense",
                            "units": 3,
                            "activation": "softmax",
                            "batch_input_shape": [None, 4],
                            "dtype": "float32",
                        },
                    }
                ],
            },
        },
        "weightsManifest": [{"paths": [shard], "weights": weights}],
    }


def _write_tfjs_variant(root: Path, name: str, seed: int) -> Variant:
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal((4, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    folder = root / name
    folder.mkdir(parents=True)
    shard = "group1-shard1of1.bin"
    if name == "uint8":
        specs, data = [], b""
        for weight_name, value in (("dense/kernel", kernel), ("dense/bias", bias)):
            lo, hi = float(value.min()), float(value.max())
            scale = (hi - lo) / 255 or 1.0
            q = np.round((value - lo) / scale).astype(np.uint8)
            quant = {"dtype": "uint8", "min": lo, "scale": scale, "original_dtype": "float32"}
            specs.append({"name": weight_name, "shape": list(value.shape), "dtype": "float32",
                          "quantization": quant})
            data += q.tobytes()
    else:
        specs = [
            {"name": "dense/kernel", "shape": [4, 3], "dtype": "float32"},
            {"name": "dense/bias", "shape": [3], "dtype": "float32"},
        ]
        data = kernel.tobytes() + bias.tobytes()
    (folder / shard).write_bytes(data)
    (folder / "model.json").write_text(json.dumps(_dense_model_json(specs, shard), indent=2))
    files = [
        describe_file(root, folder / "model.json", "model"),
        describe_file(root, folder / shard, "weights"),
    ]
    return Variant(name=name, weight_dtype=name, files=files, bytes=sum(f.bytes for f in files),
                   accuracy=0.95 if name == "float32" else 0.947, agreement=0.99,
                   check=SYNTHETIC_CHECK)


def _write_tflite_variant(root: Path, seed: int) -> Variant:
    folder = root / "tflite-float32"
    folder.mkdir(parents=True)
    body = np.random.default_rng(seed).bytes(256)
    (folder / "model.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + body)
    files = [describe_file(root, folder / "model.tflite", "model")]
    return Variant(name="tflite-float32", engine="litert", format="tflite",
                   weight_dtype="float32", files=files, bytes=files[0].bytes, accuracy=0.95,
                   check=SYNTHETIC_CHECK)




def write_synthetic_build(root: Path, seed: int = 0, name: str = "digits") -> Path:
    """Write a small but valid build dir (float32 + uint8 TF.js variants + a TFLite variant) with
    its ``variants.json``; return it. Different seeds give different bytes (new blobs)."""
    root.mkdir(parents=True, exist_ok=True)
    variants = [
        _write_tfjs_variant(root, "float32", seed),
        _write_tfjs_variant(root, "uint8", seed + 1),
        _write_tflite_variant(root, seed + 2),
    ]
    build = Build(
        name=name,
        source="browserml-train",
        architecture="tiny-dense",
        labels=["a", "b", "c"],
        input=InputSpec(height=2, width=2, channels=1),
        test_samples=100,
        keras_accuracy=0.95,
        variants=variants,
    )
    write_build(root, build)
    return root


@pytest.fixture
def make_build(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_build(seed=0)`` writes a fresh valid build dir and returns its path."""
    counter = iter(range(10_000))

    def make(seed: int = 0, name: str = "digits") -> Path:
        return write_synthetic_build(tmp_path / f"build-{next(counter)}", seed=seed, name=name)

    return make


# ------------------------------------------------------------------ live server


# The server-in-a-thread helpers live in the package (benchmarks and `browserml bench` use them
# too); these names stay for the test modules that import them from here.
LiveServer = BackgroundServer


def start_server(settings: Settings) -> LiveServer:
    """Start ``create_app(settings)`` under uvicorn in a thread, on a free loopback port."""
    return start_in_thread(settings)


@pytest.fixture
def live_server() -> Iterator[Callable[[Settings], LiveServer]]:
    """Factory: ``live_server(settings)`` starts a server; all are stopped after the test."""
    started: list[LiveServer] = []

    def start(settings: Settings) -> LiveServer:
        started.append(start_server(settings))
        return started[-1]

    yield start
    for server in started:
        if server.thread.is_alive():
            server.stop()


# ------------------------------------------------------------------ real trained models (pipeline)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real digits CNN trained on the 10,000 MNIST digits (6 epochs, fixed seed): the run dir.

    Session-scoped: training takes ~20 s on 2 cores, and every pipeline/SDK test reads it only."""
    from browserml.train import RunConfig, train

    run_dir = tmp_path_factory.mktemp("runs") / "digits"
    train(RunConfig(data="mnist", arch="cnn", input_size=28, epochs=6), run_dir)
    return run_dir


@pytest.fixture(scope="session")
def digits_build(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits run converted to a build dir (float32, float16, uint8 TF.js variants).

    Treat it as read-only; copy it (shutil.copytree) before corrupting anything."""
    from browserml.convert import convert

    build_dir = tmp_path_factory.mktemp("build") / "digits"
    convert(digits_run, build_dir, name="digits")
    return build_dir


# ------------------------------------------------------------------ browser SDK (issue 4)


@dataclass
class SdkServer:
    """A live server with the real digits build published as version 1 on ``stable``."""

    url: str
    settings: Settings
    build_dir: Path
    live: LiveServer


def publish_and_serve(build_dir: Path, data_dir: Path) -> SdkServer:
    """Publish ``build_dir`` as ``digits`` (stable) into a fresh registry under ``data_dir`` and
    start a real server on it."""
    from browserml.registry import Registry

    settings = Settings(data_dir=data_dir)
    with Registry(settings) as registry:
        registry.publish(build_dir, "digits", channel="stable")
    live = start_server(settings)
    return SdkServer(live.url, settings, build_dir, live)


@pytest.fixture(scope="module")
def sdk_server(digits_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkServer]:
    """One real server with the real digits model, shared by a test module's read-only tests."""
    served = publish_and_serve(digits_build, tmp_path_factory.mktemp("sdk-data"))
    yield served
    served.live.stop()


@pytest.fixture
def sdk_server_factory(tmp_path: Path) -> Iterator[Callable[[Path], SdkServer]]:
    """Factory for a private server (a test that corrupts blobs or stops the server); each one is
    stopped after the test."""
    started: list[SdkServer] = []

    def make(build_dir: Path) -> SdkServer:
        started.append(publish_and_serve(build_dir, tmp_path / f"data-{len(started)}"))
        return started[-1]

    yield make
    for served in started:
        if served.live.thread.is_alive():
            served.live.stop()


@pytest.fixture(scope="session")
def digit_pngs(digits_run: Path) -> list[tuple[int, bytes]]:
    """100 real MNIST digits (10 per class) from the run's held-out test split, as PNG bytes:
    the model never trained on them."""
    import io

    from PIL import Image

    test = np.load(digits_run / "test.npz")
    images, labels = test["images"], test["labels"]
    out = []
    for digit in range(10):
        for index in np.flatnonzero(labels == digit)[:10]:
            buffer = io.BytesIO()
            Image.fromarray(images[index][..., 0]).save(buffer, "PNG")
            out.append((digit, buffer.getvalue()))
    return out


# ------------------------------------------------------------------ third-party TF.js models, TF.js in Node


@pytest.fixture(scope="session")
def nsfwjs_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real pretrained MobileNetV2 (224x224x3, uint8-quantized by its authors) that the npm
    ``nsfwjs`` package ships, unpacked by ``scripts/nsfwjs-model.cjs`` into ``model.json`` + shard:
    a TF.js layers model no code of ours produced. Returns the folder; read-only (copy it with
    shutil.copytree before corrupting anything)."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "nsfwjs-model.cjs"
    out = tmp_path_factory.mktemp("nsfwjs") / "mobilenet_v2"
    subprocess.run(["node", str(script), "mobilenet_v2", str(out)], check=True, capture_output=True,
                   timeout=120)
    return out


@pytest.fixture(scope="session")
def nsfwjs_build(nsfwjs_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``nsfwjs_model`` imported with ``browserml.importer.import_model`` into a build dir
    (float32, float16, uint8 TF.js variants, accuracy null). Read-only."""
    from browserml.importer import import_model

    build_dir = tmp_path_factory.mktemp("nsfwjs-build") / "nsfw"
    import_model(nsfwjs_model / "model.json", build_dir, name="nsfw")
    return build_dir


TFJS_NODE_PREDICT = r"""
// Load a TF.js layers model folder in real TF.js (Node, cpu backend) and print its outputs.
// argv: node_modules model_dir inputs.f32 shape.json
const fs = require('fs');
const path = require('path');
const [nodeModules, dir, inputFile, shapeJson] = process.argv.slice(2);
const tf = require(path.join(nodeModules, '@tensorflow/tfjs'));
(async () => {
  const doc = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const specs = [];
  const shards = [];
  for (const group of doc.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) shards.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(shards);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadLayersModel(
    tf.io.fromMemory({ modelTopology: doc.modelTopology, weightSpecs: specs, weightData }));
  const raw = fs.readFileSync(inputFile);
  const x = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const y = model.predict(tf.tensor(x, JSON.parse(shapeJson), 'float32'));
  process.stdout.write('\n' + JSON.stringify(Array.from(await y.data())) + '\n');
})().catch((err) => { console.error(err && err.stack ? err.stack : String(err)); process.exit(1); });
"""


@pytest.fixture(scope="session")
def tfjs_predict(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path, np.ndarray], np.ndarray]:
    """Return ``predict(model_dir, images) -> outputs``: the TF.js layers model in ``model_dir``
    (``model.json`` + shards) loaded by real TF.js 4.22 under Node (cpu backend), run on
    ``images`` (float32 NHWC or NC), outputs reshaped to ``[N, -1]``. A load or predict failure
    fails the test with Node's message."""
    import subprocess

    from browserml.settings import get_settings

    work = tmp_path_factory.mktemp("tfjs-node")
    script = work / "predict.cjs"
    script.write_text(TFJS_NODE_PREDICT)
    counter = iter(range(1_000_000))

    def predict(model_dir: Path, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype="<f4")
        inputs = work / f"inputs-{next(counter)}.f32"
        inputs.write_bytes(images.tobytes())
        done = subprocess.run(
            ["node", str(script), str(get_settings().node_modules), str(model_dir), str(inputs),
             json.dumps(list(images.shape))], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"TF.js (Node) failed on {model_dir}:\n{done.stderr[-2000:]}"
        values = json.loads(done.stdout.strip().splitlines()[-1])
        return np.asarray(values, dtype=np.float32).reshape(len(images), -1)

    return predict
