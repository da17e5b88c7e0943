"""Variant table benchmark (issue 2 / issue 8 targets): size and accuracy of every variant.

Trains each configuration with the real pipeline, converts it, and prints per variant the bytes,
the ratio to float32 (ours / baseline) and the accuracy change in percentage points, plus the
targets: TF.js uint8 <= 0.26x float32 with <= 0.5 pp loss, float16 <= 0.51x with <= 0.1 pp,
tflite-int8 <= 0.26x with <= 0.5 pp.

    .venv/bin/python benchmarks/bench_convert.py [--quick | --only cnn224 ...] [--reuse-runs]
        [--out reports/convert.md]

Runs and builds are kept under ``--workdir`` (``runs/<slug>``, ``build/<slug>``) so that
``browserml bench`` can measure the same models afterwards.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from browserml.convert import convert, variant_rows
from browserml.train import RunConfig, refresh_calibration, train

CONFIGS = {
    "digits (cnn 28, mnist)": RunConfig(data="mnist", arch="cnn", input_size=28, epochs=5),
    # 3,200 images: a 320-image test split, so one flipped image (0.31 pp) fits the 0.5 pp budget.
    "reference cnn 224 (shapes)": RunConfig(data="shapes", arch="cnn", input_size=224, epochs=6,
                                            limit=3200, batch_size=32),
    "mobilenetv2 224 (shapes)": RunConfig(data="shapes", arch="mobilenetv2", input_size=224,
                                          epochs=6, limit=3200, batch_size=32),
}
SLUGS = {"digits (cnn 28, mnist)": "digits", "reference cnn 224 (shapes)": "cnn224",
         "mobilenetv2 224 (shapes)": "mnv2-224"}
TARGETS = {"float16": (0.51, 0.1), "uint8": (0.26, 0.5), "tflite-int8": (0.26, 0.5)}


def markdown(title: str, build, seconds: float, test_accuracy: float) -> str:
    """Return one configuration's table as Markdown."""
    lines = [f"### {title}", "",
             f"Keras test accuracy {test_accuracy * 100:.2f}% on {build.test_samples} held-out "
             f"images; train+convert {seconds:.0f} s.", "",
             "| variant | engine | bytes | x of float32 | accuracy | change | agreement | target |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in variant_rows(build):
        target = TARGETS.get(row["name"])
        verdict = ""
        if target:
            ok = row["ratio"] <= target[0] and -row["change_pp"] <= target[1]
            verdict = f"<= {target[0]}x, <= {target[1]} pp: {'met' if ok else 'MISSED'}"
        lines.append(f"| {row['name']} | {row['engine']} | {row['bytes']:,} | {row['ratio']:.3f}x | "
                     f"{row['accuracy'] * 100:.2f}% | {row['change_pp']:+.2f} pp | "
                     f"{row['agreement'] * 100:.2f}% | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Digits only.")
    parser.add_argument("--only", choices=sorted(SLUGS.values()), action="append",
                        help="Run only these configurations (repeatable).")
    parser.add_argument("--out", type=Path, default=Path("reports/convert.md"))
    parser.add_argument("--reuse-runs", action="store_true",
                        help="Convert the existing runs/<slug> again (calibration set refreshed) "
                             "instead of training.")
    parser.add_argument("--workdir", type=Path, default=Path("."),
                        help="Where runs/<slug> and build/<slug> are kept.")
    args = parser.parse_args()
    sections = []
    for title, config in CONFIGS.items():
        slug = SLUGS[title]
        if (args.quick and slug != "digits") or (args.only and slug not in args.only):
            continue
        run_dir, build_dir = args.workdir / "runs" / slug, args.workdir / "build" / slug
        started = time.perf_counter()
        reuse = args.reuse_runs and (run_dir / "model.keras").is_file()
        test_accuracy = (refresh_calibration(run_dir).metrics["test_accuracy"] if reuse
                         else train(config, run_dir).test_accuracy)
        build = convert(run_dir, build_dir, name=slug)
        section = markdown(title, build, time.perf_counter() - started, test_accuracy)
        print(section, flush=True)
        sections.append(section)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(sections))


if __name__ == "__main__":
    main()
