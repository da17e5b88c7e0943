"""The ``variants.json`` contract: what a build directory holds.

A build directory (``build/<name>/``) is what ``convert`` and ``import`` write and what the registry
publishes. It holds one sub-folder per variant and a ``variants.json`` describing every file with its
size and sha256, so any later step (publish, serve, the SDK) can check integrity without trusting the
file system. The schema is a pydantic model so writer and readers cannot drift apart.

Layout::

    build/digits/
      variants.json
      float32/model.json  float32/group1-shard1of1.bin
      float16/...         uint8/...
      tflite-float32/model.tflite ...       (engine "litert")
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import FormatError, IntegrityError, ModelError

VARIANTS_FILE = "variants.json"
SCHEMA = "browserml-build/1"

Engine = Literal["tfjs", "litert"]


class FileEntry(BaseModel):
    """One file of a variant, addressed relative to the build directory."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Relative to the build dir, e.g. 'uint8/model.json'.")
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Literal["model", "weights"]


class RuntimeCheck(BaseModel):
    """A variant loaded and run in the runtime that will serve it, compared with Keras."""

    model_config = ConfigDict(extra="forbid")

    runtime: str = Field(description="e.g. 'tfjs 4.22 wasm in Chromium', 'litert.js wasm in Chromium'.")
    samples: int = Field(ge=0, description="Inputs compared.")
    max_abs_diff: float | None = Field(None, description="Largest output difference from Keras.")
    agreement: float | None = Field(None, description="Top-1 agreement with Keras float32.")
    passed: bool
    error: str | None = Field(None, description="Why it failed to load or run, if it did.")


class KeptTensor(BaseModel):
    """A tensor a quantized variant keeps at higher precision, and the measurement that put it
    there: for TF.js uint8 what quantizing it alone did, for LiteRT int8 what is left when the op
    that writes it alone stays in float (and the debugger's error per step on it)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="TF.js weight name ('block_16_project/kernel') or TFLite tensor name.")
    dtype: str = Field(description="How it is stored / computed instead: float16 or float32.")
    size: int = Field(ge=0, description="Elements.")
    disagreements: int | None = Field(
        None, ge=0, description="uint8: top-1 answers it flipped when quantized alone; int8: the "
                                "flips left with it alone in float (probe images).")
    mean_change: float | None = Field(
        None, description="Mean |output change| from float32 in the same measurement.")
    error_per_step: float | None = Field(
        None, description="int8: RMS error of the op's quantized output over its quantization "
                          "step (the debugger's rmse/scale), on the probe images.")


class WeightRounding(BaseModel):
    """int8 only: the weights rounded onto their int8 grids the GPTQ way (each rounding error
    spread over the inputs not rounded yet; :mod:`browserml.weight_rounding`) instead of to the
    nearest step, fitted on the selection images; kept only when it measured better there."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(description="How the weights were rounded.")
    layers: int = Field(ge=0, description="Layers whose kernels were rounded that way.")
    samples: int = Field(ge=0, description="Images the rounding was fitted on (the selection images).")
    agreement: float = Field(description="int8 with these weights: agreement with float32 on the "
                                         "selection images (the images it was fitted on).")
    kept: bool = Field(description="Whether the written variant uses these weights (it beat "
                                   "nearest rounding's plain_agreement).")


class Precision(BaseModel):
    """How a quantized variant's mixed precision was chosen: measured on the convert's selection
    images (calibration images, else generated inputs), never on the test images its accuracy
    is reported on."""

    model_config = ConfigDict(extra="forbid")

    measured_on: str = Field(description="'calibration images' or 'generated inputs'.")
    samples: int = Field(ge=0, description="Selection images.")
    probe_samples: int = Field(ge=0, description="Images each tensor was ranked on (0: no ranking).")
    ranked_by: str | None = Field(None, description="How the candidates were ranked.")
    target_agreement: float = Field(description="1 - budget_pp / 100.")
    plain_agreement: float = Field(description="Everything quantized: agreement with float32.")
    agreement: float = Field(description="As written: agreement with float32.")
    tensors: int = Field(ge=0, description="Candidate tensors in the model.")
    lossy: int = Field(ge=0, description="Of those, the ones quantization changes (ranked).")
    kept: list[KeptTensor] = Field(default_factory=list, description="Kept out of the quantized "
                                   "dtype, most sensitive first; empty when plain met the target.")
    met: bool = Field(description="Whether the written variant met the target on these images.")
    rounding: WeightRounding | None = Field(
        None, description="int8: the error-compensating weight rounding tried when plain int8 "
                          "missed the target (ops kept in float are chosen after it, when kept).")


class Variant(BaseModel):
    """One runnable form of the model (a precision on an engine)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="float32 | float16 | uint8 | tflite-float32 | tflite-int8 ...")
    engine: Engine = "tfjs"
    format: Literal["tfjs-layers", "tfjs-graph", "tflite"] = "tfjs-layers"
    weight_dtype: str = Field(description="How weights are stored: float32, float16, uint8, int8.")
    files: list[FileEntry]
    bytes: int = Field(ge=0, description="Sum of the files' bytes.")
    accuracy: float | None = Field(None, description="Test accuracy with this variant's weights.")
    agreement: float | None = Field(None, description="Top-1 agreement with float32 on test data.")
    offered: bool = Field(True, description="False when the accuracy loss exceeds the budget.")
    note: str | None = Field(None, description="Why a variant is not offered, or other caveats.")
    precision: Precision | None = Field(
        None, description="uint8 / int8: which tensors were kept at higher precision, and why.")
    check: RuntimeCheck | None = Field(
        None, description="Its load and run in its own runtime; publish refuses an offered "
                          "variant without a passed check.")


class InputSpec(BaseModel):
    """What the model eats: raw pixels, resized by the client, rescaled inside the model."""

    model_config = ConfigDict(extra="forbid")

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: Literal[1, 3] = 3
    value_range: tuple[float, float] = (0.0, 255.0)


class Build(BaseModel):
    """The whole ``variants.json``."""

    model_config = ConfigDict(extra="forbid")

    schema_: str = Field(SCHEMA, alias="schema")
    name: str
    source: str = Field(description="'browserml-train' or 'import:<path>'.")
    architecture: str | None = None
    labels: list[str]
    input: InputSpec
    test_samples: int | None = None
    keras_accuracy: float | None = None
    variants: list[Variant]
    origin: dict | None = Field(
        None, description="Where convert read the model and data ({run} or {model, data, seed}); "
                          "verify finds its reference from it.")
    engine_notes: dict[str, str] = Field(
        default_factory=dict, description="Per engine, why it has no variant (e.g. a layer TF.js "
                                          "cannot run).")
    measured_on: str | None = Field(None, description="'test images' or 'generated inputs'.")

    def variant(self, name: str) -> Variant:
        """Given a variant name, return it, or raise FormatError naming the ones that exist."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        known = ", ".join(v.name for v in self.variants)
        raise FormatError(f"no variant {name!r} in this build (it has: {known})")

    def reference(self) -> Variant:
        """Return the full-precision variant others are compared with: TF.js float32, or
        tflite-float32 for a build TF.js cannot serve."""
        for name in ("float32", "tflite-float32"):
            for variant in self.variants:
                if variant.name == name:
                    return variant
        return self.variants[0]


def sha256_file(path: Path) -> str:
    """Given a file, return the hex sha256 of its bytes (streamed, so large shards are fine)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_file(build_dir: Path, path: Path, role: Literal["model", "weights"]) -> FileEntry:
    """Given a file inside a build dir, return its entry with size and sha256."""
    return FileEntry(
        path=path.relative_to(build_dir).as_posix(),
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        role=role,
    )


def write_build(build_dir: Path, build: Build) -> Path:
    """Write ``variants.json`` atomically (temp file + rename); return its path."""
    target = build_dir / VARIANTS_FILE
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(build.model_dump_json(by_alias=True, indent=2) + "\n")
    tmp.replace(target)
    return target


# What a build dir may hold before it has a variants.json (a convert that stopped half-way).
BUILD_ENTRY = re.compile(r"(float32|float16|uint8|tflite-[a-z0-9]+|variants\.json\.tmp|"
                         r"source\.keras)")
# Where convert keeps a live keras.Model it was given, so verify can compare with it later.
SOURCE_MODEL = "source.keras"


def prepare_build_dir(out: Path) -> None:
    """Make ``out`` an empty folder for a new build. A previous build (or a half-written one) is
    replaced; any other existing folder is refused, so a mistyped ``--out`` (``.``, ``~``, the
    source model's folder) never deletes a user's files."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ModelError(f"{out}: exists and is not a folder; choose another --out")
        entries = [entry.name for entry in out.iterdir()]
        if not (out / VARIANTS_FILE).is_file() and not all(BUILD_ENTRY.fullmatch(e) for e in entries):
            raise ModelError(f"{out}: exists and is not a build directory (no {VARIANTS_FILE}); "
                             "choose another --out or remove it")
        shutil.rmtree(out)
    out.mkdir(parents=True)


def read_build(build_dir: Path) -> Build:
    """Given a build dir, return its parsed ``variants.json`` or raise FormatError saying why not."""
    path = Path(build_dir) / VARIANTS_FILE
    if not path.is_file():
        raise FormatError(f"{path}: not found; run 'browserml convert' or 'browserml import' first")
    try:
        return Build.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise FormatError(f"{path}: invalid at {where}: {first['msg']}") from None


def check_files(build_dir: Path, build: Build) -> None:
    """Check every listed file exists with the promised size and sha256; raise naming the first
    that does not. This is what publish runs before anything is written."""
    for variant in build.variants:
        for entry in variant.files:
            path = Path(build_dir) / entry.path
            if not path.is_file():
                raise IntegrityError(f"{entry.path}: missing (variant {variant.name})")
            size = path.stat().st_size
            if size != entry.bytes:
                raise IntegrityError(
                    f"{entry.path}: {size} bytes on disk, variants.json says {entry.bytes}"
                )
            digest = sha256_file(path)
            if digest != entry.sha256:
                raise IntegrityError(
                    f"{entry.path}: sha256 {digest[:12]}… does not match variants.json "
                    f"({entry.sha256[:12]}…)"
                )
