"""Convert a Keras model (a user's file, a live model, or a ``browserml train`` run) into a build
directory of browser-ready variants, each checked in the runtime that will serve it.

The model is first flattened into its inference graph (nested models walked, training-only
layers left out: :mod:`browserml.inference_model`). TF.js variants are written from that graph
with the layers tfjs-layers lacks rewritten (:mod:`browserml.tfjs.rewrite`); TFLite variants are
exported from it with TensorFlow's converter. An engine that cannot express the model gets no
variants, and ``variants.json`` says why (``engine_notes``); the other engine still ships.

Then every variant is loaded in real TF.js / LiteRT.js in headless Chromium and compared with
Keras on the same inputs (:mod:`browserml.runtime_check`): the table's agreement and accuracy are
what those runtimes computed, and a variant that fails to load or differs is not offered. With
``data``, the inputs are a seeded test split (accuracy) and int8 is calibrated on the training
split; without, inputs are generated and int8 is skipped with the reason.

When plain uint8 or int8 misses the budget as top-1 agreement with float32 on the selection
images (calibration images, else the generated inputs; never the test images), the fewest
measured most sensitive tensors (uint8: :mod:`browserml.tfjs.precision`) or ops (int8:
:func:`browserml.tflite.mix_int8`) are kept at higher precision, and the variant's
``precision`` record says which and why. int8 first tries its weights rounded the GPTQ way
(:mod:`browserml.weight_rounding`), kept when it agrees more.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FormatError, ModelError
from .inference_model import inference_model
from .model_source import Source, read_source
from .progress import progress_bar
from .runtime_check import check_variants
from .settings import get_settings
from .tfjs.layers_model import (
    assign_weights,
    keras_weights,
    read_layers_weights,
    write_layers_model,
)
from .tfjs.precision import KEPT_DTYPE, choose_precision
from .tfjs.rewrite import tfjs_model
from .tfjs.weights import encode
from .tflite import TFLITE_VARIANTS, choose_int8, export_tflite, int8_file, mix_int8
from .tflite import predict as tflite_predict
from .variants import (
    SOURCE_MODEL,
    Build,
    InputSpec,
    KeptTensor,
    Precision,
    Variant,
    WeightRounding,
    describe_file,
    prepare_build_dir,
    write_build,
)
from .weight_rounding import rounded_weights

TFJS_VARIANTS = ("float32", "float16", "uint8")
ALL_VARIANTS = TFJS_VARIANTS + TFLITE_VARIANTS
ENGINES = ("tfjs", "litert")
ROUNDING_METHOD = ("GPTQ (Frantar et al. 2022): per output channel, inputs rounded one at a "
                   "time onto the symmetric int8 grid, each error spread over the inputs not "
                   "rounded yet by the inverse of X^T X of the layer's float inputs")
RANKED_BY = ("each changed tensor quantized alone in Keras: top-1 disagreements, then mean "
             "output change")
INT8_NEEDS_DATA = ("skipped: int8 is calibrated on real images; pass --data (a folder, mnist or "
                   "shapes) to make it")


def predictions(model, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Return the model's outputs on ``inputs`` as float32 ``[N, classes]``."""
    return np.asarray(model.predict(inputs.astype(np.float32), batch_size=batch_size, verbose=0),
                      dtype=np.float32)


def top1_figures(outputs: np.ndarray, reference: np.ndarray, targets: np.ndarray | None
                 ) -> tuple[float | None, float]:
    """Return (accuracy on ``targets`` or None, top-1 agreement with ``reference``)."""
    top1 = outputs.argmax(1)
    accuracy = None if targets is None else float((top1 == targets).mean())
    return accuracy, float((top1 == reference.argmax(1)).mean())


def tfjs_variant(model, source: Source, build_dir: Path, name: str, reference: np.ndarray,
                 shard_bytes: int, precision: Precision | None = None) -> Variant:
    """Write one TF.js variant of the (already translated) ``model``; its first figures come from
    Keras with the weights read back from its files (the runtime check replaces them). A uint8
    ``precision`` keeps its ``kept`` tensors in their own dtype."""
    folder = build_dir / name
    dtypes = {item.name: item.dtype for item in precision.kept} if precision else None
    files = write_layers_model(model, folder, name, shard_bytes, dtypes)
    original = [np.array(v.numpy()) for v in model.weights]
    try:
        assign_weights(model, read_layers_weights(folder))
        accuracy, agreement = top1_figures(predictions(model, source.inputs), reference,
                                           source.targets)
    finally:
        for variant, value in zip(model.weights, original, strict=True):
            variant.assign(value)
    entries = [describe_file(build_dir, path, "model" if path.name == "model.json" else "weights")
               for path in files]
    return Variant(name=name, engine="tfjs", format="tfjs-layers", weight_dtype=name,
                   files=entries, bytes=sum(e.bytes for e in entries), accuracy=accuracy,
                   agreement=agreement, precision=precision,
                   note=precision_note(precision) if precision else None)


def uint8_precision(model, source: Source, budget_pp: float, status: Callable[[str], None]
                    ) -> Precision | None:
    """Measure plain uint8 on the convert's selection images (calibration images, else the
    generated inputs: never the test images) and, when it misses ``budget_pp`` as top-1
    agreement with float32, choose the fewest tensors to keep in float16
    (:func:`browserml.tfjs.precision.choose_precision`). None when switched off."""
    settings = get_settings()
    if not settings.mixed_precision:
        return None
    calibrated = source.calibration is not None
    images = (source.calibration if calibrated else source.inputs)[:settings.mixed_precision_samples]
    probe = min(len(images), settings.mixed_precision_probe)
    plan = choose_precision(model, images, 1 - budget_pp / 100, probe, status)
    kept = plan.kept if plan.met else []
    return Precision(
        measured_on="calibration images" if calibrated else "generated inputs",
        samples=plan.samples, probe_samples=probe if kept or not plan.met else 0,
        ranked_by=RANKED_BY if kept or not plan.met else None,
        target_agreement=plan.target, plain_agreement=plan.plain_agreement,
        agreement=plan.agreement if plan.met else plan.plain_agreement, tensors=plan.tensors,
        lossy=plan.lossy, met=plan.met,
        kept=[KeptTensor(name=k.name, dtype=dtype_written(model, k.name), size=k.size,
                         disagreements=k.disagreements, mean_change=k.mean_change) for k in kept])


def dtype_written(model, name: str) -> str:
    """The dtype a kept tensor is actually stored as: float16, or float32 when its values lie
    beyond float16's range (``encode`` keeps those float32)."""
    value = dict(keras_weights(model))[name]
    return encode(name, value, KEPT_DTYPE).spec.get("quantization", {}).get("dtype", "float32")


def precision_note(precision: Precision, what: str = "tensors") -> str | None:
    """One line for the table: which tensors (uint8) or ops (int8) a variant keeps at higher
    precision and why; None for a plain variant that met the target."""
    where = f"on {precision.samples} {precision.measured_on}"
    if not precision.kept:
        if precision.met:
            return None
        return (f"plain: agreement {precision.plain_agreement:.1%} {where} misses "
                f"{precision.target_agreement:.1%}, and keeping changed {what} at higher "
                "precision did not beat it")
    names = [short_name(item.name) for item in precision.kept]
    shown = ", ".join(names[:3]) + (f" +{len(names) - 3} more" if len(names) > 3 else "")
    dtype = precision.kept[0].dtype
    met = "" if precision.met else ": not met, the best measured"
    return (f"mixed: {len(names)} of {precision.tensors} {what} kept {dtype} ({shown}), "
            f"chosen {where}: agreement {precision.plain_agreement:.1%} -> "
            f"{precision.agreement:.1%} (target {precision.target_agreement:.1%}{met})")


def rounding_note(precision: Precision) -> str:
    """One line for the table: int8 weights rounded the GPTQ way, and what that measured."""
    rounding = precision.rounding
    return (f"weights GPTQ-rounded ({rounding.layers} layers, fitted on {rounding.samples} "
            f"{precision.measured_on}): agreement {precision.plain_agreement:.1%} -> "
            f"{rounding.agreement:.1%} on them")


def short_name(name: str) -> str:
    """A TFLite tensor name ('model_1/block_16_project_1/convolution;...') shortened to its
    layer for the table; TF.js weight names pass unchanged."""
    first = name.split(";")[0]
    parts = first.split("/")
    return "/".join(parts[1:3]) if ";" in name or len(parts) > 2 else first


def tflite_variants(model, source: Source, build_dir: Path, names: list[str],
                    reference: np.ndarray, budget_pp: float,
                    status: Callable[[str], None] = lambda s: None) -> list[Variant]:
    """Write the TFLite variants and score each natively (LiteRT, batch 1); int8 leaves its
    worst ops in float when plain int8 misses the budget on the calibration images
    (:func:`int8_precision`)."""
    if not names:
        return []
    paths = export_tflite(model, build_dir, tuple(names), source.calibration)
    variants = []
    for name, path in paths.items():
        note, precision = None, None
        if name == "tflite-int8":
            images = source.calibration[:get_settings().mixed_precision_samples]
            outputs = predictions(model, images)
            granularity, plain = choose_int8(path.parent, images, outputs.argmax(1))
            precision = int8_precision(model, path, source, images, outputs, plain, budget_pp,
                                       status)
            if precision.kept or (precision.rounding and precision.rounding.kept):
                granularity = "per-channel"  # both are built per-channel
            note = f"int8 {granularity} scales"
            if precision.rounding and precision.rounding.kept:
                note = f"{note}; {rounding_note(precision)}"
            if precision.kept or not precision.met:
                note = f"{note}; {precision_note(precision, 'ops')}"
        accuracy, agreement = top1_figures(tflite_predict(path, source.inputs), reference,
                                           source.targets)
        entry = describe_file(build_dir, path, "model")
        variants.append(Variant(
            name=name, engine="litert", format="tflite", weight_dtype=name.split("-", 1)[1],
            files=[entry], bytes=entry.bytes, accuracy=accuracy, agreement=agreement, note=note,
            precision=precision))
    return variants


def int8_precision(model, path: Path, source: Source, images: np.ndarray, outputs: np.ndarray,
                   plain: float, budget_pp: float,
                   status: Callable[[str], None] = lambda s: None) -> Precision:
    """Given plain int8's top-1 agreement ``plain`` with float32 (``outputs``) on the
    calibration ``images``, when it misses ``budget_pp`` first try the weights rounded the GPTQ
    way (:func:`int8_rounding`; kept, rewriting ``path``, only when it agrees more), then leave
    the worst ops of the model written so far in float (:func:`browserml.tflite.mix_int8`);
    return the record of what was measured and kept."""
    settings = get_settings()
    target = 1 - budget_pp / 100
    with ExitStack() as rounded:
        rounding = None
        if plain < target and settings.int8_weight_rounding and not source.saved_model:
            rounding = int8_rounding(model, path, source, images, outputs, plain, rounded,
                                     status)
        start = rounding.agreement if rounding and rounding.kept else plain
        mixed = mix_int8(model, path, source.calibration, images, outputs, start, target,
                         settings.mixed_precision_probe, settings.mixed_int8_max_float, status)
    tried = ", ".join(f"{k}: {a:.1%}" for k, a in mixed.tried.items())
    return Precision(
        measured_on="calibration images", samples=mixed.samples,
        probe_samples=mixed.probe_samples,
        ranked_by=(f"each quantized op left alone in float (TFLite QuantizationDebugger "
                   f"denylisted_nodes): top-1 disagreements, then mean output change, that "
                   f"remain; ops in float tried (agreement): {tried}") if mixed.tried else None,
        target_agreement=mixed.target, plain_agreement=plain,
        agreement=mixed.agreement, tensors=mixed.candidates, lossy=mixed.candidates,
        met=mixed.met, rounding=rounding,
        kept=[KeptTensor(name=row["name"], dtype="float32", size=row["size"],
                         disagreements=row["disagreements"], mean_change=row["mean_change"],
                         error_per_step=row["error_per_step"]) for row in mixed.kept])


def int8_rounding(model, path: Path, source: Source, images: np.ndarray, outputs: np.ndarray,
                  plain: float, rounded: ExitStack,
                  status: Callable[[str], None]) -> WeightRounding | None:
    """Round ``model``'s weights the GPTQ way on ``images`` (:mod:`browserml.weight_rounding`),
    write it as per-channel int8 and measure its agreement with float32 (``outputs``) on the
    same images. When it beats plain int8 (``path``'s file, agreement ``plain``) the
    per-channel file replaces ``path`` and the rounded weights stay in place until
    ``rounded`` closes (so ops chosen next are chosen on this model); else ``model`` gets its
    weights back at once. The rounding only improves a file that already exists, so a layer it
    cannot handle costs nothing but the improvement: None, with the reason in ``status``."""
    expected = outputs.argmax(1)
    status("int8: weight rounding")
    candidate = path.with_name("model.rounded.tflite")
    try:
        rounding = rounded.enter_context(rounded_weights(model, images, status))
        int8_file(model, source.calibration, candidate)
    except Exception as err:  # an optional improvement: plain int8 stands
        rounded.close()
        candidate.unlink(missing_ok=True)
        status(f"int8: weight rounding skipped ({type(err).__name__}: {err})")
        return None
    agreement = float((tflite_predict(candidate, images).argmax(1) == expected).mean())
    kept = agreement > plain
    if kept:
        candidate.replace(path)
    else:
        candidate.unlink()
        rounded.close()
    return WeightRounding(method=ROUNDING_METHOD, layers=rounding.layers, samples=rounding.samples,
                          agreement=agreement, kept=kept)


def apply_budget(variants: list[Variant], budget_pp: float) -> None:
    """Mark offered variants whose accuracy loss against full precision on their engine exceeds
    ``budget_pp`` as not offered."""
    for variant in variants:
        baseline = next((v.accuracy for v in variants if v.engine == variant.engine
                         and v.weight_dtype == "float32"), None)
        if variant.accuracy is None or baseline is None or not variant.offered:
            continue
        loss_pp = (baseline - variant.accuracy) * 100
        if loss_pp > budget_pp + 1e-9:
            variant.offered = False
            reason = f"accuracy loss {loss_pp:.2f} pp exceeds the {budget_pp:g} pp budget"
            variant.note = f"{reason}; {variant.note}" if variant.note else reason


def tflite_error(exc: Exception, layer_names: list[str] = ()) -> str:
    """Return one line naming the ops TensorFlow's TFLite converter refused and the layer they
    come from (its name scope in the converter's locations), and the way out."""
    text = str(exc)
    ops = sorted(set(re.findall(r"'(tf\.[A-Za-z0-9_]+)' op", text)))
    what = f"ops {', '.join(ops)}" if ops else (text.strip().splitlines() or [type(exc).__name__])[0][:200]
    scopes = re.findall(r'"[^"/]+/([^"/@]+)/[^"]*@', text)
    layer = next((n for scope in scopes for n in (scope, re.sub(r"_\d+$", "", scope))
                  if n in layer_names), None)
    where = f" (layer {layer!r})" if layer else ""
    return (f"the TFLite converter cannot export {what}{where}; replace that layer with standard "
            "Keras layers, or serve the TF.js variants")


def choose(variants: tuple[str, ...], engines: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Validate the asked variants and engines; return (TF.js names, TFLite names) to write."""
    unknown = set(variants) - set(ALL_VARIANTS)
    if unknown:
        raise ModelError(f"unknown variant(s) {', '.join(sorted(unknown))}: "
                         f"choose from {', '.join(ALL_VARIANTS)}")
    bad = set(engines) - set(ENGINES)
    if bad or not engines:
        raise ModelError(f"unknown engine(s) {', '.join(sorted(bad)) or '(none)'}: choose from "
                         f"{', '.join(ENGINES)}")
    tfjs = [v for v in TFJS_VARIANTS if v in variants or v == "float32"] if "tfjs" in engines else []
    tflite = [v for v in TFLITE_VARIANTS if v in variants] if "litert" in engines else []
    return tfjs, tflite


def convert(model_or_path: Any, out: Path, *, data: str | None = None,
            labels: list[str] | None = None, engines: tuple[str, ...] = ENGINES,
            value_range: tuple[float, float] | None = None, name: str | None = None,
            variants: tuple[str, ...] = ALL_VARIANTS, budget_pp: float | None = None) -> Build:
    """Convert a Keras model into ``out``: one folder per variant and ``variants.json``; return
    the build description.

    ``model_or_path``: a live ``keras.Model``, a ``.keras``/``.h5`` file, a SavedModel folder or a
    ``browserml train`` run directory. ``data`` ("mnist", "shapes" or an image folder) gives
    accuracy and int8 calibration; ``labels`` names the output units. TF.js ``float32`` is always
    written when TF.js can express the model (it is the reference and the last fallback)."""
    settings = get_settings()
    budget_pp = settings.accuracy_budget_pp if budget_pp is None else budget_pp
    tfjs_names, tflite_names = choose(tuple(variants), tuple(engines))
    source = read_source(model_or_path, data=data, labels=labels, value_range=value_range)
    out = Path(out)
    prepare_build_dir(out)
    notes: dict[str, str] = {}
    if source.calibration is None and "tflite-int8" in tflite_names:
        tflite_names.remove("tflite-int8")
        notes["tflite-int8"] = INT8_NEEDS_DATA
    reference = predictions(source.model, source.inputs)
    written: list[Variant] = []
    with progress_bar() as bar:
        task = bar.add_task("convert", total=len(tfjs_names) + bool(tflite_names), status="")
        written += write_tfjs(source, out, tfjs_names, reference, notes, bar, task, budget_pp)
        bar.update(task, status="tflite")
        written += write_tflite(source, out, tflite_names, reference, notes, budget_pp,
                                lambda status: bar.update(task, status=status))
        bar.advance(task)
    if not written:
        raise ModelError("no engine can serve this model: "
                         + "; ".join(f"{k}: {v}" for k, v in notes.items()))
    check_variants(out, written, source.inputs, reference, source.targets,
                   settings.verify_tolerance)
    apply_budget(written, budget_pp)
    build = Build(
        name=name or out.name, source=source_kind(source), architecture=source.architecture,
        labels=source.labels, input=InputSpec(height=source.height, width=source.width,
                                              channels=source.channels,
                                              value_range=source.value_range),
        test_samples=len(source.inputs), keras_accuracy=keras_accuracy(source, reference),
        variants=written, origin=keep_origin(source, out), engine_notes=notes,
        measured_on=source.measured_on,
    )
    write_build(out, build)
    return build


def write_tfjs(source: Source, out: Path, names: list[str], reference: np.ndarray,
               notes: dict[str, str], bar, task, budget_pp: float) -> list[Variant]:
    """Translate the model for TF.js and write its variants (uint8 with the per-tensor
    precision :func:`uint8_precision` measures); when TF.js cannot express it, record why in
    ``notes['tfjs']`` and write none."""
    if not names:
        return []
    if source.saved_model:
        notes["tfjs"] = ("a SavedModel holds a TensorFlow graph, not Keras layers; convert the "
                         ".keras file for TF.js variants")
        return []
    try:
        model = tfjs_model(source.model)
    except (FormatError, ModelError) as exc:
        notes["tfjs"] = str(exc)
        return []
    written = []
    for variant_name in names:
        bar.update(task, status=variant_name)
        precision = None
        if variant_name == "uint8":
            precision = uint8_precision(model, source, budget_pp, lambda status: bar.update(
                task, status=f"uint8: {status}"))
        written.append(tfjs_variant(model, source, out, variant_name, reference,
                                    get_settings().shard_bytes, precision))
        bar.advance(task)
    return written


def write_tflite(source: Source, out: Path, names: list[str], reference: np.ndarray,
                 notes: dict[str, str], budget_pp: float,
                 status: Callable[[str], None] = lambda s: None) -> list[Variant]:
    """Export the inference graph to TFLite; when the converter refuses, record why in
    ``notes['litert']`` (one line naming the ops) and write none."""
    if not names:
        return []
    try:
        model = source.model if source.saved_model else inference_model(source.model)
        return tflite_variants(model, source, out, names, reference, budget_pp, status)
    except ModelError as exc:
        notes["litert"] = str(exc)
    except Exception as exc:  # TensorFlow's ConverterError and friends: many types, long text
        if type(exc).__name__ not in ("ConverterError", "ValueError", "TypeError",
                                      "NotImplementedError", "InvalidArgumentError"):
            raise
        notes["litert"] = tflite_error(exc, [layer.name for layer in source.model.layers])
    for folder in TFLITE_VARIANTS:
        if (out / folder).exists():
            import shutil

            shutil.rmtree(out / folder)
    return []


def source_kind(source: Source) -> str:
    """The build's ``source`` string: a training run, a model file, or a live model."""
    if "run" in source.origin:
        return "browserml-train"
    return f"keras:{source.origin['model']}" if source.origin.get("model") else "keras:live"


def keras_accuracy(source: Source, reference: np.ndarray) -> float | None:
    """Keras float32 test accuracy: a run's recorded one, else measured here (None when measured
    on generated inputs)."""
    if source.keras_accuracy is not None:
        return source.keras_accuracy
    return None if source.targets is None else float(
        (reference.argmax(1) == source.targets).mean())


def keep_origin(source: Source, out: Path) -> dict:
    """Return the origin verify needs; a live model is saved beside the variants first."""
    origin = dict(source.origin)
    if "run" not in origin and origin.get("model") is None:
        source.model.save(out / SOURCE_MODEL)
        origin["model"] = SOURCE_MODEL
    return origin


def variant_rows(build: Build) -> list[dict]:
    """Return one row per variant for the table and ``--json``: bytes, ratio to full precision,
    accuracy, change in percentage points, agreement and the runtime check."""
    baseline = build.reference()
    rows = []
    for variant in build.variants:
        change = (None if variant.accuracy is None or baseline.accuracy is None
                  else (variant.accuracy - baseline.accuracy) * 100)
        rows.append({
            "name": variant.name, "engine": variant.engine, "bytes": variant.bytes,
            "ratio": variant.bytes / baseline.bytes, "accuracy": variant.accuracy,
            "change_pp": change, "agreement": variant.agreement, "offered": variant.offered,
            "note": variant.note,
            "precision": None if variant.precision is None else variant.precision.model_dump(),
            "checked": None if variant.check is None else variant.check.runtime,
            "max_abs_diff": None if variant.check is None else variant.check.max_abs_diff,
        })
    return rows
