"""The benchmark harness: every (engine, backend, variant, batch) in real headless Chromium, beside
native TensorFlow and native LiteRT, in one run.

Each configuration runs in a fresh browser, in A B ... B A order over two repeats, so warm caches
and thermal drift do not favour one and a crash costs only its own row; the report keeps both
repeats' medians and their spread.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..browser import launch_browser, launch_flags, open_page, serve_local_files, vendor_mounts
from ..errors import BrowserError, ModelError
from ..progress import progress_bar
from ..settings import get_settings
from ..variants import Build, read_build
from .environment import environment
from .gpu import adapter_facts, software_gpu_warnings
from .native import native_litert, native_tensorflow

T = TypeVar("T")
STATIC = Path(__file__).resolve().parent.parent / "static"
BENCH_PACKAGES = ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm",
                  "@tensorflow/tfjs-backend-webgpu", "@litertjs/core", "@litertjs/wasm-utils",
                  "onnxruntime-web")
TFJS_BACKENDS = ("webgpu", "webgl", "wasm", "cpu")
# Each configuration is timed for at least this long (and at least ``n`` calls): a 10 ms
# configuration then gets ~100 samples instead of ``n``, which is what keeps its median within a
# few percent between back-to-back runs.
MIN_TIMED_MS = 1000


@dataclass(frozen=True)
class Config:
    """One browser configuration."""

    engine: str
    backend: str
    variant: str
    batch: int

    @property
    def label(self) -> str:
        return f"{self.engine}/{self.backend}/{self.variant}/b{self.batch}"


@dataclass
class Summary:
    """One configuration's figures over its repeats."""

    config: Config
    medians: list[float]
    min_ms: float
    median_ms: float
    p95_ms: float
    spread: float
    load_ms: float
    warmup_ms: float
    threads: int | None
    backend_used: str
    tensor_drift: int | None
    ratio_native_tf: float | None = None
    ratio_native_litert: float | None = None
    error: str | None = None


@dataclass
class BenchReport:
    """Everything one ``browserml bench`` run measured."""

    model: str
    environment: dict
    browser: dict
    native: dict
    results: list[Summary] = field(default_factory=list)
    sdk: dict | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def configurations(build: Build, engines: list[str], backends: list[str],
                   variants: list[str] | None, batches: list[int]) -> list[Config]:
    """Return every configuration the build supports among those asked for."""
    configs = []
    for variant in build.variants:
        if variants and variant.name not in variants:
            continue
        if variant.engine not in engines:
            continue
        for batch in batches:
            if variant.engine == "litert":
                configs.append(Config("litert", "wasm", variant.name, batch))
            else:
                configs.extend(Config("tfjs", b, variant.name, batch) for b in backends)
    if not configs:
        raise ModelError("no configuration to run: check --engines, --backends and --variants")
    return configs


def abba(configs: list[T], repeats: int = 2) -> list[tuple[int, T]]:
    """Return ``(repeat, config)`` in A B C, C B A order, so order effects cancel."""
    order = []
    for repeat in range(repeats):
        sequence = configs if repeat % 2 == 0 else list(reversed(configs))
        order.extend((repeat, config) for config in sequence)
    return order


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0-100) of ``values``."""
    return float(np.percentile(np.asarray(values), q))


def run_page(context, origin: str, config: Config, shape: list[int], n: int, budget_ms: float
             ) -> dict:
    """Measure one configuration in a fresh page; return the page's raw result."""
    page = open_page(context, f"{origin}/static/bench.html", "window.browsermlBenchReady === true")
    try:
        return page.evaluate("(c) => window.browsermlBench(c)", {
            "engine": config.engine, "backend": config.backend, "variant": config.variant,
            "batch": config.batch, "n": n, "shape": shape, "budgetMs": budget_ms,
            "minMs": min(MIN_TIMED_MS, budget_ms)})
    finally:
        page.close()


def run_isolated(origin: str, config: Config, shape: list[int], n: int, budget_ms: float) -> dict:
    """Measure one configuration in its own browser: a backend that exhausts memory (a 100 MB
    model on software WebGL) or crashes the GPU process takes down only its own measurement."""
    with launch_browser(["--enable-unsafe-webgpu"]) as context:
        return run_page(context, origin, config, shape, n, budget_ms)


def summarise(config: Config, runs: list[dict]) -> Summary:
    """Combine a configuration's repeats into one summary."""
    medians = [statistics.median(r["times"]) for r in runs]
    times = [t for r in runs for t in r["times"]]
    drift = [r["numTensorsAfter"] - r["numTensorsBefore"] for r in runs
             if r.get("numTensorsAfter") is not None]
    return Summary(
        config=config, medians=medians, min_ms=min(times), median_ms=statistics.median(times),
        p95_ms=percentile(times, 95),
        spread=(max(medians) - min(medians)) / statistics.mean(medians) if len(medians) > 1 else 0,
        load_ms=statistics.median(r["loadMs"] for r in runs),
        warmup_ms=statistics.median(r["warmupMs"] for r in runs),
        threads=runs[0].get("threads"), backend_used=runs[0]["backend"],
        tensor_drift=max(drift) if drift else None,
    )


def run_browser(build_dir: Path, build: Build, configs: list[Config], n: int, repeats: int,
                budget_ms: float, extra_models: dict[str, Path] | None = None
                ) -> tuple[list[Summary], dict]:
    """Run every configuration in Chromium in ABBA order; return summaries and browser facts.

    ``extra_models`` mounts more variant folders (the ONNX peer) beside the build's."""
    shape = [build.input.height, build.input.width, build.input.channels]
    raw: dict[Config, list[dict]] = {c: [] for c in configs}
    errors: dict[Config, str] = {}
    browser_env: dict = {}
    mounts = {"/static/": STATIC, "/sdk/": get_settings().sdk_dir, "/model/": build_dir,
              **vendor_mounts(BENCH_PACKAGES)}
    for variant, folder in (extra_models or {}).items():
        mounts[f"/model/{variant}/"] = folder
    with serve_local_files(mounts) as origin, progress_bar() as bar:
        order = abba(configs, repeats)
        task = bar.add_task("browser", total=len(order), status="")
        for _repeat, config in order:
            bar.update(task, status=config.label)
            if config not in errors:
                try:
                    result = run_isolated(origin, config, shape, n, budget_ms)
                    browser_env = result.pop("env")
                    raw[config].append(result)
                except Exception as exc:  # Playwright raises its own Error for page failures
                    errors[config] = str(exc).splitlines()[0][:300]
            bar.advance(task)
    summaries = []
    for config in configs:
        if config in errors:
            summaries.append(Summary(config, [], 0, 0, 0, 0, 0, 0, None, config.backend, None,
                                     error=errors[config]))
        else:
            summaries.append(summarise(config, raw[config]))
    return summaries, browser_env


def run_native(build_dir: Path, build: Build, run_dir: Path | None, batches: list[int], n: int
               ) -> dict:
    """Time native TensorFlow (when the Keras model is at hand) and native LiteRT (from the
    build's TFLite files), per batch size."""
    shape = (build.input.height, build.input.width, build.input.channels)
    native: dict = {}
    model = None
    if run_dir is not None and (run_dir / "model.keras").is_file():
        import keras

        model = keras.models.load_model(run_dir / "model.keras", compile=False)
    with progress_bar() as bar:
        task = bar.add_task("native", total=len(batches), status="")
        for batch in batches:
            entry: dict = {}
            if model is not None:
                entry["tensorflow"] = statistics.median(native_tensorflow(model, shape, batch, n))
            for variant in build.variants:
                if variant.engine == "litert":
                    path = build_dir / variant.files[0].path
                    entry[f"litert/{variant.name}"] = statistics.median(
                        native_litert(path, shape, batch, n))
            native[str(batch)] = entry
            bar.advance(task)
    return native


def attach_ratios(results: list[Summary], native: dict) -> None:
    """Give each browser figure its ratio to native TensorFlow and native LiteRT float32."""
    for summary in results:
        baseline = native.get(str(summary.config.batch), {})
        if summary.error:
            continue
        if "tensorflow" in baseline:
            summary.ratio_native_tf = summary.median_ms / baseline["tensorflow"]
        if "litert/tflite-float32" in baseline:
            summary.ratio_native_litert = summary.median_ms / baseline["litert/tflite-float32"]


def peer_models(run_dir: Path | None, workdir: Path) -> dict[str, Path]:
    """Export the ONNX peer from the run's Keras model; return ``{variant: folder}``."""
    if run_dir is None or not (run_dir / "model.keras").is_file():
        raise ModelError("--peers needs the Keras model (pass --run DIR): the ONNX export is "
                         "made from it")
    import keras

    from .peers import export_onnx

    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    return {"onnx-float32": export_onnx(model, workdir).parent}


def bench(build_dir: Path, *, run_dir: Path | None = None, engines: list[str] | None = None,
          backends: list[str] | None = None, variants: list[str] | None = None,
          batches: list[int] | None = None, n: int = 50, repeats: int = 2,
          budget_ms: float = 8000, peers: bool = False, sdk: bool = True,
          soak: int = 0, native: bool = True) -> BenchReport:
    """Benchmark a build directory; see the module docstring for the method. ``native=False``
    skips native TensorFlow / LiteRT (machines without them). The report carries the WebGL
    renderer and WebGPU adapter the browser used, and a warning for each GPU backend that was
    really a software one (gpu.software_gpu_warnings)."""
    build_dir = Path(build_dir)
    build = read_build(build_dir)
    batches = batches or [1]
    configs = configurations(build, engines or ["tfjs", "litert"],
                             backends or list(TFJS_BACKENDS), variants, batches)
    if run_dir is None:
        guess = build_dir.resolve().parent.parent / "runs" / build.name
        run_dir = guess if guess.is_dir() else None
    native_figures = run_native(build_dir, build, run_dir, batches, n) if native else {}
    with tempfile.TemporaryDirectory(prefix="browserml-peers-") as tmp:
        extra = peer_models(run_dir, Path(tmp)) if peers else {}
        configs += [Config("ort", "wasm", variant, batch) for variant in extra for batch in batches]
        results, browser_env = run_browser(build_dir, build, configs, n, repeats, budget_ms,
                                           extra)
    if all(r.error for r in results):
        raise BrowserError(f"every configuration failed; first: {results[0].error}")
    attach_ratios(results, native_figures)
    browser_env["flags"] = launch_flags()
    browser_env["gpu"] = adapter_facts(browser_env)
    ran = {r.config.backend for r in results if not r.error}
    report = BenchReport(model=build.name, environment=environment(native), browser=browser_env,
                         native=native_figures, results=results,
                         warnings=software_gpu_warnings(browser_env, ran))
    if sdk:
        from .sdk import bench_sdk

        report.sdk = bench_sdk(build_dir, build, n, soak)
        offered = {v.name for v in build.variants if v.offered}
        report.sdk["ratios"] = sdk_ratios(report.sdk["median_ms"], results, native_figures, offered)
    return report


def sdk_ratios(sdk_ms: float, results: list[Summary], native: dict, offered: set[str]) -> dict:
    """The SDK's automatic choice against the fastest measured configuration it was allowed to
    pick (variants the manifest offers: within the accuracy budget), TF.js's default start
    (``webgl`` here, the backend TF.js picks by itself when one exists), the ONNX peer and the
    native runtimes, all at batch 1."""
    batch1 = [r for r in results if not r.error and r.config.batch == 1]
    allowed = [r for r in batch1 if r.config.variant in offered]
    fastest = min(allowed, key=lambda r: r.median_ms, default=None)
    default = next((r for r in batch1 if r.config.engine == "tfjs" and r.config.backend == "webgl"
                    and r.config.variant == "float32"), None)
    peer = next((r for r in batch1 if r.config.engine == "ort"), None)
    base = native.get("1", {})
    ratio = lambda other: None if other is None else sdk_ms / other  # noqa: E731
    return {
        "fastest_config": fastest.config.label if fastest else None,
        "over_fastest": ratio(fastest.median_ms if fastest else None),
        "over_tfjs_default": ratio(default.median_ms if default else None),
        "over_onnx_peer": ratio(peer.median_ms if peer else None),
        "over_native_tf": ratio(base.get("tensorflow")),
        "over_native_litert": ratio(base.get("litert/tflite-float32")),
    }
