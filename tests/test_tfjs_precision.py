"""Mixed-precision uint8 (issue 16): the tensors a uint8 variant keeps in float16 are chosen by
measurement, only when plain uint8 misses the budget, and the mixed manifest loads in real TF.js
in headless Chromium with exactly the numbers Python decodes."""

from __future__ import annotations

import json

import keras
import numpy as np

from browserml.convert import convert
from browserml.model_source import generated_inputs
from browserml.runtime_check import browser_outputs, verify_page
from browserml.tfjs.layers_model import (
    assign_weights,
    keras_weights,
    read_layers_weights,
    read_model_json,
    write_layers_model,
)
from browserml.tfjs.precision import choose_precision
from browserml.tfjs.weights import stored_bytes

SIZE = 6
HEAD = "head/kernel"


def head_model(sensitive: bool):
    """Image -> Dense body (ordinary random weights: uint8 costs it little) -> Dense head.

    ``sensitive``: the head's weights carry the decision in differences of ~0.03 while one
    weight on a dead unit (bias -100 in front of a ReLU, so it never fires) stretches the
    tensor's range to 60: a uint8 step (~0.24) is then eight times the signal, and plain uint8
    erases it. Keeping that one tensor in float16 restores the answers."""
    from keras import layers

    keras.utils.set_random_seed(3)
    inputs = keras.Input((SIZE, SIZE, 1), name="pixels")
    x = layers.Flatten()(layers.Rescaling(1 / 255)(inputs))
    body = layers.Dense(8, activation="relu", name="body")
    x = body(x)
    head = layers.Dense(4, activation="softmax", name="head")
    outputs = head(x)
    model = keras.Model(inputs, outputs, name="sensitive" if sensitive else "plain")
    rng = np.random.default_rng(3)
    kernel, bias = body.get_weights()
    bias[-1] = -100.0  # unit 7 never fires
    body.set_weights([rng.normal(0, 0.3, kernel.shape).astype("float32"), bias])
    head_kernel = rng.normal(0, 0.03 if sensitive else 1.0, (8, 4)).astype("float32")
    if sensitive:
        head_kernel[-1, 0] = 60.0  # on the dead unit: no effect on any answer, only on the range
    head.set_weights([head_kernel, np.zeros(4, "float32")])
    return model


def agreement_with_float32(model, folder, images) -> float:
    """Keras with the variant's weights read back from its files, against Keras float32."""
    reference = model.predict(images, verbose=0).argmax(1)
    original = [np.array(v.numpy()) for v in model.weights]
    try:
        assign_weights(model, read_layers_weights(folder))
        return float((model.predict(images, verbose=0).argmax(1) == reference).mean())
    finally:
        for variable, value in zip(model.weights, original, strict=True):
            variable.assign(value)


def manifest_dtypes(folder) -> dict[str, str]:
    document = read_model_json(folder / "model.json")
    return {spec["name"]: spec.get("quantization", {}).get("dtype", spec["dtype"])
            for group in document["weightsManifest"] for spec in group["weights"]}


def test_plain_uint8_loses_the_sensitive_head_and_choose_keeps_only_it():
    model = head_model(sensitive=True)
    images = generated_inputs(SIZE, SIZE, 1, (0.0, 255.0), seed=11)
    weights_before = [np.array(v.numpy()) for v in model.weights]
    plan = choose_precision(model, images, target=0.995, probe_samples=16)
    assert plan.plain_agreement < 0.8  # the test's premise: plain uint8 really misses
    assert plan.lossy == 2  # body and head kernels (the biases, two values or zeros, are exact)
    assert [item.name for item in plan.kept] == [HEAD] and plan.met
    assert plan.agreement >= 0.995 and plan.dtypes == {HEAD: "float16"}
    assert plan.kept[0].disagreements > 0
    for variable, value in zip(model.weights, weights_before, strict=True):  # restored
        np.testing.assert_array_equal(variable.numpy(), value)


def test_an_ordinary_model_stays_plain_uint8_and_ranks_nothing():
    model = head_model(sensitive=False)
    images = generated_inputs(SIZE, SIZE, 1, (0.0, 255.0), seed=11)
    calls: list[str] = []
    plan = choose_precision(model, images, target=0.995, probe_samples=16, advance=calls.append)
    assert plan.met and plan.kept == [] and plan.plain_agreement >= 0.995
    assert calls == ["plain uint8"]  # measured once, no ranking


def test_mixed_manifest_is_honest_about_bytes_and_round_trips(tmp_path):
    model = head_model(sensitive=True)
    files = write_layers_model(model, tmp_path, "uint8", 1 << 20, {HEAD: "float16"})
    dtypes = manifest_dtypes(tmp_path)
    assert dtypes[HEAD] == "float16"
    assert {name: d for name, d in dtypes.items() if name != HEAD} == {
        "body/kernel": "uint8", "body/bias": "uint8", "head/bias": "uint8"}
    document = read_model_json(tmp_path / "model.json")
    specs = document["weightsManifest"][0]["weights"]
    assert sum(f.stat().st_size for f in files[1:]) == sum(stored_bytes(s) for s in specs) == (
        36 * 8 + 8 + 4 + 2 * 8 * 4)
    read = read_layers_weights(tmp_path)
    expected = dict(keras_weights(model))
    np.testing.assert_array_equal(read[HEAD], expected[HEAD].astype(np.float16).astype(np.float32))


def test_convert_writes_mixed_uint8_and_it_runs_in_tfjs_in_chromium(tmp_path):
    model = head_model(sensitive=True)
    build = convert(model, tmp_path / "mixed", engines=("tfjs",), variants=("float32", "uint8"))
    uint8 = build.variant("uint8")
    precision = uint8.precision
    assert precision is not None and precision.met
    assert precision.measured_on == "generated inputs" and precision.samples == 32
    assert [item.name for item in precision.kept] == [HEAD]
    assert precision.kept[0].dtype == "float16" and precision.plain_agreement < 0.8
    assert uint8.note.startswith("mixed: 1 of 4 tensors kept float16 (head/kernel)")
    folder = tmp_path / "mixed" / "uint8"
    assert manifest_dtypes(folder)[HEAD] == "float16"
    assert uint8.bytes == sum(f.stat().st_size for f in folder.iterdir())
    # the runtime check: real TF.js in Chromium agrees with float32 as Keras predicted
    assert uint8.check.passed and uint8.offered and uint8.agreement == 1.0
    stored = json.loads((tmp_path / "mixed" / "variants.json").read_text())
    assert stored["variants"][1]["precision"]["kept"][0]["name"] == HEAD
    # and computes exactly what Python decodes from the mixed manifest
    images = generated_inputs(SIZE, SIZE, 1, (0.0, 255.0), seed=5)
    assign_weights(model, read_layers_weights(folder))
    python = model.predict(images, verbose=0)
    with verify_page(tmp_path / "mixed") as page:
        got, _ = browser_outputs(page, uint8, images)
    assert np.abs(got - python).max() <= 1e-5


def test_convert_keeps_plain_uint8_when_it_meets_the_budget(tmp_path):
    build = convert(head_model(sensitive=False), tmp_path / "plain", engines=("tfjs",),
                    variants=("float32", "uint8"))
    uint8 = build.variant("uint8")
    assert uint8.precision.kept == [] and uint8.precision.probe_samples == 0
    assert uint8.note is None and uint8.offered
    assert set(manifest_dtypes(tmp_path / "plain" / "uint8").values()) == {"uint8"}


def test_mixed_precision_can_be_switched_off(tmp_path, monkeypatch):
    from browserml.settings import get_settings

    monkeypatch.setenv("BROWSERML_MIXED_PRECISION", "0")
    get_settings.cache_clear()
    try:
        build = convert(head_model(sensitive=True), tmp_path / "off", engines=("tfjs",),
                        variants=("float32", "uint8"))
    finally:
        get_settings.cache_clear()
    uint8 = build.variant("uint8")
    assert uint8.precision is None and uint8.agreement < 0.8  # plain uint8, as before
    assert set(manifest_dtypes(tmp_path / "off" / "uint8").values()) == {"uint8"}
