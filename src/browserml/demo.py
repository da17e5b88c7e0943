"""The demo job behind ``make demo``: the whole pipeline on the built-in digits.

Each step is skipped when its output is already there, so a second ``make demo`` is quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .convert import convert
from .train import RunConfig, train
from .variants import Build, read_build
from .verify import VerifyReport, verify

DIGITS = "digits"


@dataclass
class DemoResult:
    build_dir: Path
    build: Build
    report: VerifyReport


def prepare_digits(workdir: Path, epochs: int = 5) -> DemoResult:
    """Train (if absent), convert (if absent) and verify the digits model under ``workdir``."""
    run_dir = workdir / "runs" / DIGITS
    build_dir = workdir / "build" / DIGITS
    if not (run_dir / "model.keras").is_file():
        train(RunConfig(data="mnist", arch="cnn", input_size=28, epochs=epochs), run_dir)
    if not (build_dir / "variants.json").is_file():
        convert(run_dir, build_dir, name=DIGITS)
    report = verify(build_dir, run_dir)
    return DemoResult(build_dir, read_build(build_dir), report)
