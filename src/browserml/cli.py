"""The ``browserml`` command: a thin layer over the Python API.

Each command parses its options, calls one API function and prints the result. Expected failures
(:class:`browserml.errors.BrowserMLError`) become one readable line on stderr and a non-zero exit;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from .errors import BrowserMLError

# The variant names, without importing TensorFlow at CLI start-up.
ALL_VARIANTS = ("float32", "float16", "uint8", "tflite-float32", "tflite-float16", "tflite-int8")

# Wide enough for the variant table when stdout is a pipe or a CI log.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True)


class BrowserMLGroup(click.Group):
    """A click group that turns BrowserMLError into `error: <message>` and exit code 1 (or the
    error's own code)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrowserMLError as exc:
            # escape(): messages quote shapes and paths in [brackets], which are not markup
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                              soft_wrap=True)
            sys.exit(exc.exit_code)


@click.group(cls=BrowserMLGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="browserml")
def cli() -> None:
    """BrowserML: train an image classifier, ship it to browsers with TF.js, and watch it there."""


def print_json(payload: object) -> None:
    """Print machine-readable output on stdout, nothing else."""
    click.echo(json.dumps(payload, indent=2))


def existing_dir(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Path | None:
    """Click callback: return the path, leaving existence checks to the API's clearer errors."""
    return Path(value) if value is not None else None


def percent(value: float | None) -> str:
    """Format a fraction as a percentage, or a dash when unknown."""
    return "-" if value is None else f"{value * 100:.2f}%"


def print_variant_table(build) -> None:
    """Print variant | engine | bytes | x of float32 | accuracy | change | agreement."""
    from rich.table import Table

    from .convert import variant_rows

    measured = f", measured on {build.measured_on}" if build.measured_on else ""
    table = Table(title=f"{build.name}: {build.architecture or build.source}{measured}")
    for column in ("variant", "engine", "bytes", "x of float32", "accuracy", "change",
                   "agreement", "diff in runtime", "offered", "note"):
        table.add_column(column, justify="left" if column in ("variant", "engine", "note")
                         else "right")
    for row in variant_rows(build):
        change = "-" if row["change_pp"] is None else f"{row['change_pp']:+.2f} pp"
        table.add_row(row["name"], row["engine"], f"{row['bytes']:,}", f"{row['ratio']:.3f}x",
                      percent(row["accuracy"]), change, percent(row["agreement"]),
                      "-" if row.get("max_abs_diff") is None else f"{row['max_abs_diff']:.1e}",
                      "yes" if row["offered"] else "no", row["note"] or "")
    console.print(table)
    for engine, note in build.engine_notes.items():
        console.print(f"{engine}: {escape(note)}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- pipeline: train, convert, verify


@cli.command()
@click.option("--data", required=True, help="'mnist', 'shapes' or an image folder root/<label>/*.")
@click.option("--arch", type=click.Choice(["cnn", "mobilenetv2", "mobilenetv3small",
                                           "mobilenetv3large", "efficientnetb0", "resnet50"]),
              default="cnn", show_default=True)
@click.option("--weights", default="none", show_default=True,
              help="Backbone weights: none, imagenet (Keras's cache, ~/.keras/models; never "
                   "downloaded) or a .keras / .h5 / .weights.h5 / TF.js model.json path.")
@click.option("--fine-tune", type=click.IntRange(0), default=0, show_default=True,
              help="Phase 2: unfreeze the backbone's top N layers (BatchNorm stays frozen) at a "
                   "10x lower learning rate.")
@click.option("--fine-tune-epochs", type=click.IntRange(1), default=None,
              help="Phase 2 epochs (default: --epochs).")
@click.option("--augment", default=None,
              help="flip,rotation,zoom,contrast (any) or none; training only "
                   "(default: all with --weights, none without).")
@click.option("--input-range", type=click.Choice(["-1,1", "0,1", "0,255"]), default=None,
              help="Pixel range the backbone was trained on (default: its family's own).")
@click.option("--patience", type=click.IntRange(1), default=3, show_default=True,
              help="Early stopping: epochs without a better validation loss.")
@click.option("--input-size", type=click.IntRange(8, 1024), default=28, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=3, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--learning-rate", type=float, default=1e-3, show_default=True)
@click.option("--limit", type=click.IntRange(2), default=None, help="Use the first N samples.")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None,
              help="Force grayscale or RGB (default: mnist 1, others 3).")
@click.option("--alpha", type=float, default=1.0, show_default=True, help="MobileNetV2 width.")
@click.option("--head", type=click.Choice(["flatten", "gap"]), default="flatten",
              show_default=True, help="cnn head: the reference flatten, or compact global pooling.")
@click.option("--seed", type=int, default=None, help="Random seed (default from settings).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Run directory.")
def train(data, arch, weights, fine_tune, fine_tune_epochs, augment, input_range, patience,
          input_size, epochs, batch_size, learning_rate, limit, channels, alpha, head, seed, out):
    """Train a classifier (from scratch, or fine-tune a pretrained backbone) and save model,
    labels and metrics to --out."""
    from .train import RunConfig
    from .train import train as run_training

    config = RunConfig(data=data, arch=arch, input_size=input_size, epochs=epochs,
                       batch_size=batch_size, limit=limit,
                       channels=int(channels) if channels else None, alpha=alpha, head=head,
                       learning_rate=learning_rate, seed=seed, weights=weights,
                       fine_tune=fine_tune, fine_tune_epochs=fine_tune_epochs, augment=augment,
                       input_range=input_range, patience=patience)
    result = run_training(config, Path(out))
    if result.skipped:
        err_console.print(f"skipped {len(result.skipped)} unreadable file(s):", highlight=False)
        for line in result.skipped[:20]:
            err_console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    console.print(f"saved {result.run_dir}: {result.params:,} parameters, "
                  f"val accuracy {percent(result.val_accuracy)}, "
                  f"test accuracy {percent(result.test_accuracy)}", highlight=False)


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Build directory.")
@click.option("--data", default=None,
              help="'mnist', 'shapes' or an image folder root/<label>/*: accuracy and int8 "
                   "calibration on a seeded split (without: agreement on generated inputs).")
@click.option("--labels", default=None,
              help="Class names, comma-separated or a JSON file (default: the --data folders).")
@click.option("--engines", default="tfjs,litert", show_default=True,
              help="Comma-separated engines to build for: tfjs, litert.")
@click.option("--value-range", type=click.Choice(["0,255", "0,1", "-1,1"]), default=None,
              help="Pixel range the model expects (default 0,255; the SDK scales to it).")
@click.option("--name", default=None, help="Model name (default: the --out folder's name).")
@click.option("--budget", type=float, default=None,
              help="Accuracy-loss budget in pp; variants beyond it are not offered (default 0.5).")
@click.option("--variants", default=",".join(ALL_VARIANTS), show_default=True,
              help="Comma-separated variants to write (float32 is always written).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def convert(model, out, data, labels, engines, value_range, name, budget, variants, as_json):
    """Convert MODEL (a .keras or .h5 file, a SavedModel folder or a 'browserml train' run) into
    TF.js (float32, float16, uint8) and TFLite (float32, float16, int8) variants, each checked in
    real TF.js / LiteRT.js, with a size/accuracy table."""
    from .convert import convert as run_convert
    from .convert import variant_rows

    chosen = tuple(v.strip() for v in variants.split(",") if v.strip())
    build = run_convert(
        Path(model), Path(out), data=data, labels=parse_labels(labels),
        engines=tuple(e.strip() for e in engines.split(",") if e.strip()),
        value_range=tuple(float(v) for v in value_range.split(",")) if value_range else None,
        name=name, budget_pp=budget, variants=chosen)
    if as_json:
        print_json({"variants": [{k: row[k] for k in ("name", "engine", "bytes", "accuracy",
                                                      "change_pp", "agreement", "offered",
                                                      "checked", "note", "precision")}
                                 for row in variant_rows(build)],
                    "engine_notes": build.engine_notes})
    else:
        print_variant_table(build)


@cli.command()
@click.argument("build_dir", type=click.Path())
@click.option("--run", "run_dir", type=click.Path(), default=None,
              help="Run directory with the Keras model and test images (default: runs/<name>).")
@click.option("--samples", type=click.IntRange(1), default=None, help="Test images (default 200).")
@click.option("--backend", type=click.Choice(["wasm", "cpu", "webgl"]), default="wasm",
              show_default=True, help="TF.js backend to verify on.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def verify(build_dir, run_dir, samples, backend, as_json):
    """Run every variant in real TF.js (headless Chromium) and compare it with Keras."""
    from dataclasses import asdict

    from rich.table import Table

    from .verify import verify as run_verify

    report = run_verify(Path(build_dir), Path(run_dir) if run_dir else None, samples=samples,
                        backend=backend)
    if as_json:
        print_json({"samples": report.samples, "ok": report.ok,
                    "variants": [asdict(v) for v in report.variants]})
        return
    table = Table(title=f"TF.js / LiteRT.js in Chromium vs Keras, {report.samples} test images")
    for column in ("variant", "engine", "backend", "max abs diff", "agreement", "accuracy",
                   "result"):
        table.add_column(column)
    for v in report.variants:
        diff = "-" if v.max_abs_diff is None else f"{v.max_abs_diff:.2e}"
        result = f"not runnable: {v.error}" if v.error else ("ok" if v.passed else "FAIL")
        table.add_row(v.name, v.engine, v.backend, diff, percent(v.agreement),
                      percent(v.accuracy), result)
    console.print(table)


# ---------------------------------------------------------------- registry and server (issue 3)


def registry_settings(data_dir: str | None):
    """Return the settings, with --data-dir overriding BROWSERML_DATA_DIR when given."""
    from .settings import get_settings

    settings = get_settings()
    return settings.model_copy(update={"data_dir": Path(data_dir)}) if data_dir else settings


data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                               help="Registry data dir (default: settings.data_dir).")
channel_choice = click.Choice(["stable", "canary"])


@cli.command()
@click.argument("build_dir", type=click.Path())
@click.option("--name", required=True, help="Model name, [a-z0-9-]{1,64}.")
@click.option("--version", "version", type=click.IntRange(1), default=None,
              help="Version number (default: the next one).")
@click.option("--channel", type=channel_choice, default=None,
              help="Point this channel at it. Without it, a model's first version goes on stable; "
                   "later versions leave every channel alone.")
@data_dir_option
def publish(build_dir, name, version, channel, data_dir):
    """Validate a build dir and store it as a new immutable version."""
    from .registry import Registry

    with Registry(registry_settings(data_dir)) as registry:
        published = registry.publish(Path(build_dir), name, version=version, channel=channel)
    where = f" -> {published.channel}" if published.channel else ""
    if published.channel and not channel:
        where += f" (first version of {name}: {published.channel} points at it)"
    console.print(f"published {name} v{published.version}{where}: {len(published.variants)} "
                  f"variants, {published.files} files, {published.bytes:,} bytes", highlight=False)


@cli.command()
@click.argument("name")
@click.argument("version", type=click.IntRange(1))
@click.option("--channel", type=channel_choice, required=True)
@click.option("--percent", type=click.IntRange(1, 100), default=100, show_default=True,
              help="Share of clients that get this version (a canary rollout below 100).")
@data_dir_option
def promote(name, version, channel, percent, data_dir):
    """Point a channel at a published version, for all or a percentage of clients."""
    from .registry import Registry

    with Registry(registry_settings(data_dir)) as registry:
        state = registry.promote(name, version, channel, percent)
    rest = f" (others stay on v{state.base_version})" if state.base_version else ""
    console.print(f"{name} {channel}: v{state.version} for {state.percent}%{rest}",
                  highlight=False)


@cli.command()
@click.argument("name")
@click.option("--channel", type=channel_choice, required=True)
@data_dir_option
def rollback(name, channel, data_dir):
    """Undo a channel's last promotion."""
    from .registry import Registry

    with Registry(registry_settings(data_dir)) as registry:
        state = registry.rollback(name, channel)
    console.print(f"{name} {channel}: back to v{state.version} for {state.percent}%",
                  highlight=False)


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@data_dir_option
def list_models(as_json, data_dir):
    """List published models, their versions and channels."""
    from rich.table import Table

    from .registry import Registry

    with Registry(registry_settings(data_dir)) as registry:
        models = registry.list()
    if as_json:
        print_json({"models": models})
        return
    table = Table(title="models")
    for column in ("model", "version", "variants", "bytes", "published", "channels"):
        table.add_column(column)
    for model in models:
        for v in model["versions"]:
            channels = ", ".join(f"{c} {s['percent']}%" for c, s in model["channels"].items()
                                 if s["version"] == v["version"])
            table.add_row(model["name"], str(v["version"]), " ".join(v["variants"]),
                          f"{v['bytes']:,}", v["created_at"], channels)
    console.print(table)


@cli.command()
@click.option("--delete", is_flag=True, help="Delete what is found (default: only report it).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the summary.")
@data_dir_option
def gc(delete, as_json, data_dir):
    """Find blobs no version references and leftovers of crashed publishes (dry run by default).

    Blobs of in-flight publishes are never touched: gc waits for them to commit."""
    from .registry import Registry

    with Registry(registry_settings(data_dir)) as registry:
        garbage = registry.gc(delete=delete)
    if as_json:
        print_json({"blobs": garbage.blobs, "bytes": garbage.bytes, "leftovers": garbage.leftovers,
                    "leftover_bytes": garbage.leftover_bytes, "deleted": garbage.deleted})
        return
    verb = "deleted" if delete else "would delete"
    console.print(f"{verb} {len(garbage.blobs)} unreferenced blobs ({garbage.bytes:,} bytes) and "
                  f"{garbage.leftovers} leftovers of crashed publishes ({garbage.leftover_bytes:,} bytes)"
                  + ("" if delete else "; run with --delete to remove them"), highlight=False)


@cli.command()
@click.option("--host", default=None, help="Bind address (default: settings.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port (default: settings.port, 8000).")
@click.option("--access-log/--no-access-log", default=False, show_default=True)
@click.option("--proxy-headers/--no-proxy-headers", default=False, show_default=True,
              help="Trust X-Forwarded-* from a reverse proxy on 127.0.0.1.")
@data_dir_option
def serve(host, port, access_log, proxy_headers, data_dir):
    """Serve manifests, blobs, the SDK and pages over HTTP (uvicorn, one worker)."""
    from .server.run import serve as run_server

    run_server(registry_settings(data_dir), host=host, port=port, access_log=access_log,
               proxy_headers=proxy_headers)


@cli.command(name="export")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--model", "models", multiple=True, help="Model to export (repeatable; default: all).")
@click.option("--channel", "channels", multiple=True,
              help="Channel to export (repeatable; default: every channel of each model).")
@click.option("--listen", default="8080", show_default=True, help="nginx.conf's listen address.")
@click.option("--server-name", default="_", show_default=True, help="nginx.conf's server_name.")
@data_dir_option
def export_(out, models, channels, listen, server_name, data_dir):
    """Write a static tree (channel documents, blobs, SDK, runtimes) for any CDN, with an nginx
    server block and per-object metadata; only new blobs are copied, documents are written last."""
    from .export import export

    report = export(registry_settings(data_dir), Path(out), models or None, channels or None,
                    listen=listen, server_name=server_name)
    console.print(f"exported {len(report.documents)} channel documents to {report.out}/public: "
                  f"{report.blobs_new} new blobs ({report.bytes_new:,} bytes), {report.blobs_kept} already "
                  f"there; {report.runtime_copied} SDK/runtime files copied, {report.runtime_kept} "
                  f"unchanged; {report.out}/nginx.conf, {report.out}/objects.json", highlight=False)


@cli.command(name="import")
@click.argument("model_json", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Build directory.")
@click.option("--name", default=None, help="Model name (default: the --out folder's name).")
@click.option("--labels", default=None,
              help="Class names, comma-separated or a JSON file (default: class_0..class_N-1).")
@click.option("--value-range", type=click.Choice(["0,255", "0,1", "-1,1"]), default="0,255",
              show_default=True, help="Pixel range the model expects (the SDK scales to it).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def import_(model_json, out, name, labels, value_range, as_json):
    """Validate a TF.js layers or graph model made elsewhere and write it as a build directory."""
    from .convert import variant_rows
    from .importer import import_model

    build = import_model(Path(model_json), Path(out), name=name, labels=parse_labels(labels),
                         value_range=tuple(float(v) for v in value_range.split(",")))
    if as_json:
        print_json({"variants": [{k: row[k] for k in ("name", "bytes", "accuracy", "agreement")}
                                 for row in variant_rows(build)]})
    else:
        print_variant_table(build)


def parse_labels(value: str | None) -> list[str] | None:
    """Given ``a,b,c`` or a path to a JSON list, return the labels (None when not given)."""
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        try:
            labels = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise click.BadParameter(f"{path}: expected a JSON list of strings")
        return labels
    return [label.strip() for label in value.split(",") if label.strip()]


@cli.command()
@click.option("--epochs", type=click.IntRange(1), default=5, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where runs/ and build/ go.")
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Publish the model and serve the demo page and dashboard (until Ctrl-C).")
@click.option("--host", default=None, help="Bind address (default: settings.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port (default: settings.port, 8000).")
@data_dir_option
def demo(epochs, workdir, serve, host, port, data_dir):
    """Train the built-in digits model (if absent), convert, verify and print the variant table;
    then publish it (if absent) and serve the demo page and the dashboard."""
    from .demo import demo_urls, prepare_digits, publish_digits

    result = prepare_digits(Path(workdir), epochs=epochs)
    print_variant_table(result.build)
    console.print(f"verified in Chromium: float32 max abs diff "
                  f"{result.report.variants[0].max_abs_diff:.2e} over {result.report.samples} "
                  f"test digits", highlight=False)
    if not serve:
        return
    from .server.run import serve as run_server

    settings = registry_settings(data_dir)
    published = publish_digits(settings, result.build_dir)
    console.print(f"digits v{published.version} on stable"
                  f"{' (published now)' if published.fresh else ' (already published)'}",
                  highlight=False)
    host = host or settings.host
    port = settings.port if port is None else port
    for what, url in demo_urls(settings, host, port).items():
        console.print(f"{what:>9}: {url}", highlight=False, soft_wrap=True)
    console.print("classify digits on the demo page; the dashboard fills within seconds "
                  "(Ctrl-C stops the server)", highlight=False)
    run_server(settings, host=host, port=port)


def split_list(value: str | None) -> list[str] | None:
    """Given ``a,b,c``, return ``["a", "b", "c"]`` (None when not given)."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@cli.command()
@click.argument("build_dir", type=click.Path())
@click.option("--run", "run_dir", type=click.Path(), default=None,
              help="Run directory with the Keras model for native TensorFlow (default runs/<name>).")
@click.option("--engines", default="tfjs,litert", show_default=True)
@click.option("--backends", default="webgpu,webgl,wasm,cpu", show_default=True,
              help="TF.js backends to measure.")
@click.option("--variants", default=None, help="Variants to measure (default: all).")
@click.option("--batch", default="1", show_default=True, help="Batch sizes, e.g. 1,8.")
@click.option("--n", type=click.IntRange(5), default=50, show_default=True,
              help="Timed calls per configuration and repeat.")
@click.option("--budget-ms", type=float, default=8000, show_default=True,
              help="Time cap per configuration and repeat (at least 5 calls are always made); "
                   "software backends at ~1 s a call need ~15000 for medians that repeat within 10%.")
@click.option("--soak", type=click.IntRange(0), default=0, show_default=True,
              help="Predictions in the SDK soak (tensor and heap drift).")
@click.option("--no-sdk", is_flag=True, help="Skip the SDK measurements (engines only).")
@click.option("--peers", is_flag=True,
              help="Also run the model exported to ONNX in ONNX Runtime Web (needs the run dir).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Write an HTML report with a plot.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), default=None,
              help="Write the tables as Markdown (for BENCHMARKS.md).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.option("--browser", "browser_path", type=click.Path(dir_okay=False), default=None,
              help="Chromium executable to run (default: settings.chromium, BROWSERML_CHROMIUM).")
@click.option("--browser-flag", "browser_flags", multiple=True,
              help="Extra Chromium flag (repeatable), e.g. --browser-flag=--use-angle=vulkan.")
@click.option("--gpu", is_flag=True,
              help="Add the Vulkan/WebGPU flag preset that puts WebGL and WebGPU on a real GPU "
                   "(Linux + NVIDIA; see README 'Benchmarking on a GPU').")
@click.option("--no-native", is_flag=True,
              help="Skip native TensorFlow / LiteRT (for machines where they are not installed).")
def bench(build_dir, run_dir, engines, backends, variants, batch, n, budget_ms, soak, no_sdk, peers,
          html_path, markdown_path, as_json, browser_path, browser_flags, gpu, no_native):
    """Benchmark every engine x backend x variant in headless Chromium against native
    TensorFlow and LiteRT on this machine, plus the SDK's own choice."""
    from .bench.harness import bench as run_bench
    from .bench.report import markdown, table, write_html

    try:
        batches = [int(b) for b in split_list(batch) or ["1"]]
    except ValueError:
        raise click.BadParameter(f"--batch {batch!r}: expected integers like 1,8") from None
    from .bench.gpu import GPU_FLAGS
    from .browser import browser_options

    flags = [*(GPU_FLAGS if gpu else ()), *browser_flags]
    with browser_options(Path(browser_path) if browser_path else None, flags):
        report = run_bench(Path(build_dir), run_dir=Path(run_dir) if run_dir else None,
                           engines=split_list(engines), backends=split_list(backends),
                           variants=split_list(variants), batches=batches, n=n,
                           budget_ms=budget_ms, peers=peers, sdk=not no_sdk, soak=soak,
                           native=not no_native)
    if html_path:
        write_html(report, Path(html_path))
    if markdown_path:
        Path(markdown_path).write_text(markdown(report))
    if as_json:
        print_json(report.to_json())
        return
    console.print(table(report))
    gpu = report.browser.get("gpu", {})
    console.print(f"WebGL renderer: {gpu.get('webgl_renderer')}; WebGPU adapter: "
                  f"{gpu.get('webgpu_adapter')}", highlight=False)
    for line in report.warnings:
        console.print(f"[bold red]{line}[/]")
    if report.sdk:
        console.print(sdk_summary(report.sdk), highlight=False)


def sdk_summary(sdk: dict) -> str:
    """Given the SDK figures of a bench report, return them as a few readable lines."""
    choice, ratios = sdk["choice"], sdk["ratios"]
    lines = [
        f"SDK chose {choice['engine']}/{choice['backend']}/{choice['variant']} "
        f"(threads {choice['threads']}): median {sdk['median_ms']:.3f} ms per classify",
        f"  load: cold {sdk['cold']['load_ms']:.0f} ms, cached {sdk['cached']['load_ms']:.0f} ms "
        f"({sdk['cached_over_cold_load']:.2f}x); first prediction cold "
        f"{sdk['cold']['first_prediction_ms']:.1f} ms",
    ]
    for key, label in (("over_fastest", f"fastest config ({ratios['fastest_config']})"),
                       ("over_tfjs_default", "TF.js default (webgl)"),
                       ("over_onnx_peer", "ONNX Runtime Web"), ("over_native_tf", "native TF"),
                       ("over_native_litert", "native LiteRT")):
        if ratios.get(key) is not None:
            lines.append(f"  SDK / {label}: {ratios[key]:.3f}x")
    if sdk.get("soak"):
        soaked = sdk["soak"]
        lines.append(f"  soak {soaked['predictions']}: tensor drift {soaked['tensor_drift']}, "
                     f"heap growth {soaked['heap_growth_mb']:.2f} MB")
    return "\n".join(lines)


def main() -> None:
    """Console-script entry point."""
    # TensorFlow's C++ start-up chatter (oneDNN, CPU features) is noise in a CLI's output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cli()


if __name__ == "__main__":
    main()
