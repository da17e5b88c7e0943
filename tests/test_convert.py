"""Convert a real trained run (the digits CNN) into TF.js variants, and the budget rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from browserml.convert import TFJS_VARIANTS, apply_budget, convert, variant_rows
from browserml.errors import ModelError
from browserml.settings import get_settings
from browserml.tfjs.layers_model import (
    assign_weights,
    keras_weights,
    read_layers_weights,
    read_model_json,
    write_layers_model,
)
from browserml.train import read_run, refresh_calibration
from browserml.variants import Build, Variant, check_files, read_build, sha256_file

RUN_FILES = ("model.keras", "labels.json", "metrics.json", "run.json", "test.npz")


@pytest.fixture(scope="module")
def build(digits_build: Path) -> Build:
    return read_build(digits_build)


@pytest.fixture(scope="module")
def keras_model(digits_run: Path):
    return read_run(digits_run).load_model()


def test_three_tfjs_variant_folders(digits_build, build):
    names = [v.name for v in build.variants if v.engine == "tfjs"]
    assert names == list(TFJS_VARIANTS)
    for name in TFJS_VARIANTS:
        variant = build.variant(name)
        assert (variant.format, variant.weight_dtype) == ("tfjs-layers", name)
        folder = digits_build / name
        assert (folder / "model.json").is_file()
        listed = sorted(entry.path for entry in variant.files)
        on_disk = sorted(p.relative_to(digits_build).as_posix() for p in folder.iterdir())
        assert listed == on_disk  # every file described, nothing stray
        assert [e.role for e in variant.files].count("model") == 1


def test_variants_json_describes_the_files_exactly(digits_build, build):
    check_files(digits_build, build)
    for variant in build.variants:
        assert variant.bytes == sum(entry.bytes for entry in variant.files)
        for entry in variant.files:
            path = digits_build / entry.path
            assert path.stat().st_size == entry.bytes
            assert sha256_file(path) == entry.sha256


def test_build_metadata_comes_from_the_run(digits_run, build):
    run = read_run(digits_run)
    assert build.name == "digits" and build.source == "browserml-train"
    assert build.architecture == run.info["arch"] == "cnn"
    assert build.labels == run.labels == [str(d) for d in range(10)]
    assert (build.input.height, build.input.width, build.input.channels) == (28, 28, 1)
    assert build.test_samples == len(run.test_labels)
    assert build.keras_accuracy == run.metrics["test_accuracy"]


def test_the_run_keeps_its_first_training_images_for_int8_calibration(digits_run):
    """calib.npz is the first `calibration_samples` images of the seeded training split: what
    int8 calibration draws from, never a test image."""
    from browserml import datasets

    run = read_run(digits_run)
    data = datasets.load("mnist", input_size=28, limit=run.info["limit"], seed=run.info["seed"])
    train_images = datasets.split(data, run.info["seed"]).train.images
    calibration = run.calibration_images()
    assert len(calibration) == min(get_settings().calibration_samples, len(train_images)) == 1024
    assert np.array_equal(calibration, train_images[:1024])


def test_refresh_calibration_rewrites_the_set_a_new_training_run_would_keep(tmp_path, digits_run):
    run_dir = tmp_path / "digits"
    shutil.copytree(digits_run, run_dir)
    np.savez_compressed(run_dir / "calib.npz", images=read_run(digits_run).calibration_images()[:3])
    refreshed = refresh_calibration(run_dir)
    assert np.array_equal(refreshed.calibration_images(), read_run(digits_run).calibration_images())
    assert refreshed.metrics == read_run(digits_run).metrics  # the model and its figures untouched


def test_shards_respect_the_shard_size(digits_build, build):
    limit = get_settings().shard_bytes
    for name in TFJS_VARIANTS:
        document = read_model_json(digits_build / name / "model.json")
        for group in document["weightsManifest"]:
            for shard in group["paths"]:
                assert 0 < (digits_build / name / shard).stat().st_size <= limit


def test_quantized_variants_are_smaller(build):
    float32 = build.variant("float32").bytes
    assert build.variant("uint8").bytes <= 0.26 * float32
    assert build.variant("float16").bytes <= 0.51 * float32


def test_accuracy_and_agreement_are_measured(digits_run, build):
    run = read_run(digits_run)
    steps = 1 / len(run.test_labels)
    for name in TFJS_VARIANTS:
        variant = build.variant(name)
        assert variant.accuracy is not None and 0.9 < variant.accuracy <= 1.0  # a real classifier
        assert variant.agreement is not None and 0.0 <= variant.agreement <= 1.0
        # accuracy is a count of test images, never an estimate
        assert abs(variant.accuracy / steps - round(variant.accuracy / steps)) < 1e-6
    float32 = build.variant("float32")
    assert float32.agreement == 1.0
    assert float32.accuracy == pytest.approx(run.metrics["test_accuracy"], abs=steps)
    assert build.variant("float16").agreement >= 0.99


def test_float32_files_hold_the_trained_weights(digits_build, keras_model):
    weights = read_layers_weights(digits_build / "float32")
    expected = dict(keras_weights(keras_model))
    assert list(weights) == list(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(weights[name], value, err_msg=name)


def test_quantized_files_are_within_their_encoding_error(digits_build, keras_model):
    expected = dict(keras_weights(keras_model))
    uint8 = read_layers_weights(digits_build / "uint8")
    float16 = read_layers_weights(digits_build / "float16")
    specs = {spec["name"]: spec for group in read_model_json(digits_build / "uint8" / "model.json")
             ["weightsManifest"] for spec in group["weights"]}
    for name, value in expected.items():
        scale = specs[name]["quantization"]["scale"]
        assert np.abs(uint8[name] - value).max() <= scale / 2 * (1 + 1e-6) + 1e-7, name
        np.testing.assert_array_equal(float16[name], value.astype(np.float16).astype(np.float32))
    assert any(not np.array_equal(uint8[n], v) for n, v in expected.items())


def test_variant_rows_compare_with_float32(build):
    rows = {row["name"]: row for row in variant_rows(build)}
    assert rows["float32"]["ratio"] == 1.0 and rows["float32"]["change_pp"] == 0.0
    for name in ("float16", "uint8"):
        variant = build.variant(name)
        assert rows[name]["ratio"] == variant.bytes / build.variant("float32").bytes
        assert rows[name]["change_pp"] == pytest.approx(
            (variant.accuracy - build.variant("float32").accuracy) * 100)
        assert rows[name]["offered"] == variant.offered


def test_multi_shard_uint8_model_runs_in_tfjs_as_python_predicts(tmp_path, digits_run, keras_model,
                                                                 tfjs_predict):
    # Small shards force the real model over many files; TF.js must read back exactly the
    # dequantized numbers our decoder (and therefore convert's accuracy) uses.
    folder = tmp_path / "uint8"
    files = write_layers_model(keras_model, folder, "uint8", shard_bytes=64 * 1024)
    assert len(files) > 4
    assert all(path.stat().st_size <= 64 * 1024 for path in files[1:])
    images = read_run(digits_run).test_images[:16].astype(np.float32)
    original = [np.array(v.numpy()) for v in keras_model.weights]
    try:
        assign_weights(keras_model, read_layers_weights(folder))
        python = keras_model.predict(images, verbose=0)
    finally:
        for variable, value in zip(keras_model.weights, original, strict=True):
            variable.assign(value)
    assert np.abs(tfjs_predict(folder, images) - python).max() <= 1e-5
    assert np.abs(keras_model.predict(images, verbose=0) - python).max() > 0  # uint8 did change it


# ---------------------------------------------------------------- the accuracy budget


def variant(name: str, accuracy: float | None) -> Variant:
    return Variant(name=name, weight_dtype=name, files=[], bytes=1, accuracy=accuracy)


def test_budget_marks_only_variants_that_lose_too_much():
    variants = [variant("float32", 0.950), variant("float16", 0.949), variant("uint8", 0.940),
                variant("at-budget", 0.945), variant("better", 0.960), variant("unknown", None)]
    apply_budget(variants, 0.5)

    offered = {v.name: v.offered for v in variants}
    assert offered == {"float32": True, "float16": True, "uint8": False, "at-budget": True,
                       "better": True, "unknown": True}
    uint8 = variants[2]
    assert uint8.note == "accuracy loss 1.00 pp exceeds the 0.5 pp budget"
    assert all(v.note is None for v in variants if v.offered)


def test_a_larger_budget_offers_everything():
    variants = [variant("float32", 0.95), variant("uint8", 0.90)]
    apply_budget(variants, 10)
    assert all(v.offered for v in variants)


def test_budget_is_applied_by_convert(digits_build, build):
    baseline = build.variant("float32").accuracy
    budget = get_settings().accuracy_budget_pp
    for v in build.variants:
        if v.accuracy is not None:
            assert v.offered == ((baseline - v.accuracy) * 100 <= budget + 1e-9), v.name


# ---------------------------------------------------------------- refusals


def test_missing_model_or_run_dir(tmp_path):
    with pytest.raises(ModelError, match=r"not found; give a \.keras or \.h5 file, a SavedModel "
                                         r"folder or a 'browserml train' run directory"):
        convert(tmp_path / "runs" / "nothing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing", RUN_FILES)
def test_incomplete_run_dir_names_the_missing_file(tmp_path, digits_run, missing):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in RUN_FILES:
        if name != missing:
            shutil.copy(digits_run / name, run_dir / name)
    with pytest.raises(ModelError, match=f"{missing} is missing; is this a 'browserml train' output"):
        convert(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_malformed_run_json(tmp_path, digits_run):
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    (run_dir / "labels.json").write_text("[\"0\", \"1\"")
    with pytest.raises(ModelError, match="malformed JSON"):
        convert(run_dir, tmp_path / "out")


def test_unknown_variant_is_refused(tmp_path, digits_run):
    with pytest.raises(ModelError, match="unknown variant\\(s\\) int3"):
        convert(digits_run, tmp_path / "out", variants=("float32", "int3"))


def test_convert_never_deletes_a_folder_that_is_not_a_build(tmp_path, digits_run):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(ModelError, match="not a build directory"):
        convert(digits_run, precious)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_convert_replaces_a_previous_build(tmp_path, digits_run, digits_build):
    out = tmp_path / "build"
    shutil.copytree(digits_build, out)
    (out / "float32" / "stale.bin").write_bytes(b"old")
    build = convert(digits_run, out, variants=("float32",))
    assert [v.name for v in build.variants] == ["float32"]
    assert not (out / "float32" / "stale.bin").exists() and not (out / "uint8").exists()
    assert json.loads((out / "variants.json").read_text())["variants"][0]["name"] == "float32"
