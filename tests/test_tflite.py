"""Mixed int8/float TFLite (issue 16): when full-integer int8 misses the budget on the
calibration images, the op that loses the answers is found by measurement and left in float,
and the mixed model runs in real LiteRT.js in headless Chromium."""

from __future__ import annotations

import importlib

import keras
import numpy as np

from browserml.convert import convert
from browserml.tflite import float_op_ladder

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
