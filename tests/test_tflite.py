"""Mixed int8/float TFLite (issue 16): when full-integer int8 misses the budget on the
calibration images, its weights are rounded the GPTQ way and, if still short, the op that loses
the answers is found by measurement and left in float; each model runs in real LiteRT.js in
headless Chromium."""

from __future__ import annotations

import importlib
from contextlib import contextmanager

import keras
import numpy as np

from browserml.convert import convert
from browserml.model_source import read_source
from browserml.tflite import float_op_ladder
from browserml.weight_rounding import LEVELS, Rounding, round_rows

SIZE = 16
# the module, not the function of the same name that the package exports
convert_module = importlib.import_module("browserml.convert")
HEAD_OUTPUT = "StatefulPartitionedCall_1:0"  # the FULLY_CONNECTED head's output in TFLite


def outlier_head_model():
    """Pixels -> mean colour -> Dense(8) logits, where unit 7 sits at -1000 (bias) and the
    seven others differ by ~0.05: the head's int8 output range is then ~1000 wide, one step
    ~4, and all seven answers quantize to the same level (plain int8 agrees with float32 on
    none). TFLite's QuantizationDebugger scores that op's error per step as tiny (the error is
    small *relative to its step*), so only measuring what each op costs finds it."""
    from keras import layers

    keras.utils.set_random_seed(5)
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = layers.GlobalAveragePooling2D()(layers.Rescaling(1 / 255)(inputs))
    head = layers.Dense(8, name="head")
    model = keras.Model(inputs, head(x), name="outlier_head")
    bias = np.zeros(8, "float32")
    bias[7] = -1000.0
    head.set_weights([np.random.default_rng(0).normal(0, 0.05, (3, 8)).astype("float32"), bias])
    return model


def test_int8_leaves_the_losing_op_in_float_and_runs_in_litert_js(tmp_path, monkeypatch):
    seen = {}
    choose, measure = convert_module.choose_int8, convert_module.int8_precision

    def recording_choose(folder, images, expected):
        seen["granularity images"] = images
        return choose(folder, images, expected)

    def recording_measure(model, path, source, *args, **kwargs):
        seen["source"] = source
        return measure(model, path, source, *args, **kwargs)

    monkeypatch.setattr(convert_module, "choose_int8", recording_choose)
    monkeypatch.setattr(convert_module, "int8_precision", recording_measure)
    build = convert(outlier_head_model(), tmp_path / "int8", data="shapes",
                    variants=("float32", "tflite-float32", "tflite-int8"))
    int8 = build.variant("tflite-int8")
    precision = int8.precision
    assert precision is not None and precision.measured_on == "calibration images"
    assert precision.plain_agreement < 0.5  # the premise: plain int8 really loses the answers
    assert precision.met and precision.agreement >= precision.target_agreement
    assert [item.name for item in precision.kept] == [HEAD_OUTPUT]
    kept = precision.kept[0]
    assert kept.dtype == "float32" and kept.disagreements == 0
    assert kept.error_per_step < 0.1  # what the debugger's own metric says: harmless-looking
    assert int8.note.startswith("int8 per-channel scales; mixed: 1 of ")
    # GPTQ rounding was tried first (plain missed) and measured no better: not kept
    assert precision.rounding is not None and not precision.rounding.kept
    # real LiteRT.js in Chromium loaded the mixed int8/float model and agrees with float32
    assert int8.check.passed and int8.check.runtime.startswith("LiteRT.js")
    assert int8.agreement >= 0.99 and int8.offered
    assert int8.bytes == (tmp_path / "int8" / "tflite-int8" / "model.tflite").stat().st_size
    # per-tensor vs per-channel was chosen on calibration images, never on the scored test set
    chosen_on, source = seen["granularity images"], seen["source"]
    assert np.array_equal(chosen_on, source.calibration[:len(chosen_on)])
    assert not any(np.array_equal(image, test) for image in chosen_on[:8] for test in source.inputs)


def test_float_op_ladder_doubles_up_to_the_cap_and_leaves_one_op_quantized():
    assert float_op_ladder(65, 16) == [1, 2, 4, 8, 16]
    assert float_op_ladder(65, 12) == [1, 2, 4, 8, 12]
    assert float_op_ladder(3, 0) == [1]
    assert float_op_ladder(3, 5) == [1, 2]


def correlated_features_model():
    """Pixels -> 24 colour mixes (a 1x1 conv of 3 channels: the features are strongly
    correlated) -> mean -> Dense(8), centred on the data so the answers vary. Feature 0 is
    always 0 but carries head weights of 8.0: each head row's int8 step (8/127) is then larger
    than its other weights (~0.05), so rounding each weight to its nearest step scrambles the
    logits, while GPTQ can spread each rounding error over the other correlated features."""
    from keras import layers

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    mix, head = layers.Conv2D(24, 1, name="mix"), layers.Dense(8, name="head")
    features = layers.GlobalAveragePooling2D()(mix(layers.Rescaling(1 / 255)(inputs)))
    model = keras.Model(inputs, head(features), name="correlated")
    kernel = rng.normal(0, 1, (1, 1, 3, 24)).astype("float32")
    kernel[..., 0] = 0
    mix.set_weights([kernel, np.zeros(24, "float32")])
    weights = rng.normal(0, 0.05, (24, 8)).astype("float32")
    weights[0] = 8.0
    images = read_source(model, data="shapes").calibration.astype("float32")
    mean = keras.Model(inputs, features).predict(images, verbose=0).mean(0)
    head.set_weights([weights, -(mean @ weights)])
    return model


def test_int8_keeps_gptq_rounded_weights_when_they_agree_more_and_runs_in_litert_js(tmp_path):
    model = correlated_features_model()
    before = [weight.numpy().copy() for weight in model.weights]
    build = convert(model, tmp_path / "int8", data="shapes",
                    variants=("float32", "tflite-float32", "tflite-int8"))
    int8 = build.variant("tflite-int8")
    precision = int8.precision
    assert precision.plain_agreement < 0.7  # the premise: nearest rounding loses the answers
    rounding = precision.rounding
    assert rounding.kept and rounding.layers == 2 and rounding.samples == precision.samples
    assert rounding.agreement > precision.plain_agreement + 0.3
    assert precision.agreement >= rounding.agreement  # ops left in float only add to it
    assert "weights GPTQ-rounded (2 layers, fitted on 256 calibration images)" in int8.note
    # real LiteRT.js in Chromium loaded it; on the test images it agrees far more than plain did
    assert int8.check.passed and int8.check.runtime.startswith("LiteRT.js")
    assert int8.agreement > precision.plain_agreement + 0.2
    # the user's model got its own weights back
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(before, model.weights, strict=True))


def test_a_rounding_failure_leaves_plain_int8_offered_and_the_weights_untouched(tmp_path,
                                                                              monkeypatch):
    """The rounding is an improvement on a file already written: a layer it cannot handle
    must cost the variant nothing (the weights restored, the int8 file still checked)."""
    model = correlated_features_model()
    before = [weight.numpy().copy() for weight in model.weights]

    kernel = model.layers[-1].kernel

    @contextmanager
    def zeroed(model, images, status):  # stands in for rounded weights, restored on close
        kept = kernel.numpy()
        kernel.assign(np.zeros(kernel.shape))
        try:
            yield Rounding(layers=1, samples=len(images))
        finally:
            kernel.assign(kept)

    def refused(model, calibration, path):
        raise ValueError("a layer the int8 converter refuses (test)")

    monkeypatch.setattr(convert_module, "rounded_weights", zeroed)
    monkeypatch.setattr(convert_module, "int8_file", refused)
    build = convert(model, tmp_path / "int8", data="shapes",
                    variants=("float32", "tflite-float32", "tflite-int8"))
    int8 = build.variant("tflite-int8")
    assert int8.precision.rounding is None
    assert int8.check.passed and "GPTQ" not in (int8.note or "")
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(before, model.weights, strict=True))


def test_gptq_rounding_stays_on_the_int8_grid_and_moves_the_outputs_less_than_nearest():
    rng = np.random.default_rng(3)
    inputs = rng.normal(0, 1, (500, 3)) @ rng.normal(0, 1, (3, 40)) + rng.normal(0, 0.05, (500, 40))
    weights = rng.normal(0, 0.05, (6, 40))
    weights[:, 5] = 2.0  # one large weight per row sets a coarse step
    hessian = inputs.T @ inputs
    scale = np.abs(weights).max(1, keepdims=True) / LEVELS
    nearest = np.round(weights / scale) * scale
    for stack in (hessian, np.repeat(hessian[None], 6, axis=0)):  # shared (act order) and per row
        rounded = round_rows(weights, stack)
        steps = rounded / scale
        assert np.allclose(steps, np.round(steps), atol=1e-6) and np.abs(steps).max() <= LEVELS
        # each row's largest weight is kept, so TFLite finds the same scale
        assert np.allclose(np.abs(rounded).max(1), np.abs(weights).max(1))
        error = np.abs(inputs @ (rounded - weights).T).mean()
        assert error < np.abs(inputs @ (nearest - weights).T).mean() / 2
