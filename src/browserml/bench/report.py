"""Bench reports: a rich table for the terminal, JSON for machines, HTML with a plot for people."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from rich.table import Table

from .harness import BenchReport


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    """Format a number, or a dash when it is missing."""
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def rows(report: BenchReport) -> list[list[str]]:
    """Return one row of strings per configuration (shared by the table and the HTML)."""
    out = []
    for s in report.results:
        if s.error:
            out.append([s.config.label, "-", "-", "-", "-", "-", "-", "-", "-", "-", s.error])
            continue
        out.append([
            s.config.label, s.backend_used, fmt(s.min_ms, 3), fmt(s.median_ms, 3), fmt(s.p95_ms, 3),
            fmt(s.spread * 100, 1, "%"), fmt(s.warmup_ms, 1), "-" if s.threads is None else str(s.threads),
            fmt(s.ratio_native_tf, 2, "x"), fmt(s.ratio_native_litert, 2, "x"),
            "" if s.tensor_drift in (None, 0) else f"tensor drift {s.tensor_drift}",
        ])
    return out


HEADERS = ["configuration", "ran on", "min ms", "median ms", "p95 ms", "repeat spread",
           "warm-up ms", "threads", "/ native TF", "/ native LiteRT", "note"]


def table(report: BenchReport) -> Table:
    """Return the terminal table."""
    t = Table(title=f"{report.model}: browser vs native ({report.environment['cpu']['model']}, "
                    f"{report.environment['cpu']['cores']} cores)")
    for header in HEADERS:
        t.add_column(header, justify="left" if header in ("configuration", "ran on", "note")
                     else "right")
    for row in rows(report):
        t.add_row(*row)
    return t


def plot_svg(report: BenchReport) -> str:
    """Return a horizontal bar chart of median latency per configuration (log scale) as SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [s for s in report.results if not s.error]
    labels = [s.config.label for s in ok]
    values = [s.median_ms for s in ok]
    for name, value in report.native.get("1", {}).items():
        labels.append(f"native {name}")
        values.append(value)
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(labels) + 1.2))
    colours = ["#4c72b0" if not label.startswith("native") else "#dd8452" for label in labels]
    ax.barh(labels, values, color=colours)
    ax.set_xscale("log")
    ax.set_xlabel("median ms per call (log scale)")
    ax.invert_yaxis()
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    return buffer.getvalue()


def write_html(report: BenchReport, path: Path) -> Path:
    """Write a self-contained HTML report (table, plot, environment); return its path."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows(report))
    svg = base64.b64encode(plot_svg(report).encode()).decode()
    env = html.escape(json.dumps({"machine": report.environment, "browser": report.browser,
                                  "native": report.native, "sdk": report.sdk}, indent=2))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""<!doctype html><meta charset="utf-8">
<title>BrowserML bench: {html.escape(report.model)}</title>
<style>body{{font:14px system-ui;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style>
<h1>BrowserML bench: {html.escape(report.model)}</h1>
<table><tr>{head}</tr>{body}</table>
<h2>Median latency</h2><img alt="median latency per configuration" src="data:image/svg+xml;base64,{svg}">
<h2>Environment</h2><pre>{env}</pre>
""")
    return path


INT8_DOT = {
    "usdot": "exact (AVX-VNNI): LiteRT.js int8 runs XNNPACK's dot-product kernels",
    "sdot": "signed (Arm dot product): LiteRT.js int8 runs XNNPACK's dot-product kernels",
    "none": "saturating (no AVX-VNNI): LiteRT.js int8 runs XNNPACK's 16-bit multiply kernels",
}


def environment_line(report: BenchReport) -> str:
    """Given a report, return one line on what the numbers were measured on."""
    machine, browser = report.environment, report.browser
    cpu = machine.get("cpu", {})
    wasm = [name for name, key in (("SIMD", "simd"), ("relaxed SIMD", "relaxedSimd"),
                                   ("threads", "threads")) if browser.get(key)]
    dot = INT8_DOT.get(browser.get("int8Dot"), "not available")
    return (f"Measured on {cpu.get('model', '?')} ({cpu.get('cores', '?')} cores; "
            f"{' '.join(cpu.get('flags', []))}), {machine.get('chromium', '?')}, "
            f"crossOriginIsolated {browser.get('crossOriginIsolated')}, wasm {', '.join(wasm) or 'plain'};"
            f" relaxed-SIMD int8 dot product: {dot}.")


def markdown(report: BenchReport) -> str:
    """Return the report as Markdown tables (what BENCHMARKS.md quotes)."""
    gpu = report.browser.get("gpu") or {}
    lines = [environment_line(report), "",
             f"WebGL renderer: {gpu.get('webgl_renderer')}; WebGPU adapter: {gpu.get('webgpu_adapter')}.",
             *[f"**{w}**" for w in report.warnings], "",
             f"| {' | '.join(HEADERS)} |", "|" + " --- |" * len(HEADERS)]
    lines += [f"| {' | '.join(row)} |" for row in rows(report)]
    native = ", ".join(f"{k} {v:.2f} ms" for k, v in report.native.get("1", {}).items())
    lines += ["", f"Native at batch 1 (median): {native}."]
    if report.sdk:
        sdk, ratios = report.sdk, report.sdk["ratios"]
        choice = sdk["choice"]
        lines += ["", f"SDK's own choice: {choice['engine']}/{choice['backend']}/{choice['variant']}"
                  f" (threads {choice['threads']}), median {sdk['median_ms']:.2f} ms per classify "
                  f"(preprocessing included); load cold {sdk['cold']['load_ms']:.0f} ms, cached "
                  f"{sdk['cached']['load_ms']:.0f} ms ({sdk['cached_over_cold_load']:.2f}x)."]
        parts = [f"{key.removeprefix('over_')} {value:.3f}x" for key, value in ratios.items()
                 if key.startswith("over_") and value is not None]
        lines.append(f"SDK / baseline: {', '.join(parts)} (fastest = {ratios['fastest_config']}).")
        if sdk.get("soak"):
            soaked = sdk["soak"]
            lines.append(f"Soak of {soaked['predictions']} predictions: tensor drift "
                         f"{soaked['tensor_drift']}, JS heap growth {soaked['heap_growth_mb']:.2f} MB.")
    return "\n".join(lines) + "\n"
