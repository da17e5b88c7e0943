"""Bring your own model (issue 15): Keras models as users build them, converted and checked in
real TF.js / LiteRT.js (headless Chromium), and the one-line errors when they cannot be."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from browserml.convert import convert
from browserml.errors import FormatError, ModelError
from browserml.inference_model import inference_model, max_difference, sample_inputs
from browserml.registry import Registry
from browserml.settings import Settings
from browserml.tfjs.rewrite import tfjs_model
from browserml.tfjs.topology import keras_to_tfjs_topology
from browserml.variants import read_build
from browserml.verify import verify

SIZE = 16


def image_input(channels: int = 3, height: int = SIZE, width: int = SIZE):
    return keras.Input((height, width, channels), name="pixels")


def forms_model():
    """One small functional model holding every translated layer form (seeded weights)."""
    from keras import layers

    keras.utils.set_random_seed(7)
    inputs = image_input()
    x = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomContrast(0.2),
                          layers.GaussianNoise(0.1)], name="augment")(inputs)
    x = layers.Rescaling([1 / 255, 1 / 200, 1 / 100], offset=[0.0, -0.5, 0.1])(x)  # per channel
    norm = layers.Normalization(axis=-1)
    norm.adapt(np.random.default_rng(0).uniform(0, 1, (16, SIZE, SIZE, 3)).astype("float32"))
    x = norm(x)
    x = layers.CenterCrop(SIZE - 2, SIZE - 4)(x)
    x = layers.Conv2D(8, 3, padding="same", activation="hard_silu",
                      kernel_initializer="lecun_normal",
                      kernel_regularizer=keras.regularizers.L1L2(1e-4, 1e-4))(x)
    x = layers.Activation("hard_sigmoid")(x) * 3.0 - 1.0  # Keras 3's hard_sigmoid, x * c, x - c
    x = 2.0 - x  # c - x
    x = layers.Conv2D(8, 3, padding="same", groups=2, activation="silu")(x)  # grouped
    x = layers.Conv2D(8, 3, padding="same", groups=8, activation="leaky_relu")(x)  # depthwise
    x = layers.SpatialDropout2D(0.3)(x)
    x = layers.PReLU()(x)
    x = layers.ELU()(x) / 4.0
    a = layers.Conv2D(8, 1, activation="gelu")(x)
    b = layers.Conv2D(8, 1, activation="mish")(x)
    x = layers.Average()([a, b]) + layers.Maximum()([a, b]) - layers.Minimum()([a, b])
    x = layers.Subtract()([x, a])
    x = layers.LayerNormalization()(x)
    x = layers.UpSampling2D(2)(x)
    pooled = layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = layers.Multiply()([x, layers.Activation("sigmoid")(pooled)])
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.ActivityRegularization(l1=0.01)(x)
    x = layers.Dropout(0.5)(layers.Dense(16, activation="selu")(x))
    outputs = layers.Dense(4, activation="softmax")(layers.GaussianDropout(0.2)(x))
    return keras.Model(inputs, outputs, name="forms")


def sequence_model():
    """Layers TF.js supports that image classifiers use less: 1D conv/pooling, RNNs,
    TimeDistributed, on an image read as a sequence of rows (non-square input)."""
    from keras import layers

    keras.utils.set_random_seed(8)
    inputs = image_input(1, height=12, width=10)
    x = layers.Reshape((12, 10))(inputs)
    x = layers.Rescaling(1 / 255)(x)
    x = layers.Conv1D(8, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.TimeDistributed(layers.Dense(6))(x)
    x = layers.LSTM(8, return_sequences=True)(x)
    x = layers.SimpleRNN(8)(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(x), name="sequence")


def tutorial_model():
    """The Keras transfer-learning tutorial's shape: augmentation, a frozen keras.applications
    base nested and called with training=False, pooling, dropout, a dense head."""
    keras.utils.set_random_seed(9)
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False,
                                          weights=None, alpha=0.35)
    base.trainable = False
    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal"),
                                     keras.layers.RandomRotation(0.2)], name="augmentation")
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(augmentation(inputs))
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    outputs = keras.layers.Dense(8)(keras.layers.Dropout(0.2)(x))
    return keras.Model(inputs, outputs, name="tutorial")


def assert_checked(build, names):
    """Every named variant was run in its runtime, matched Keras and is offered (the models here
    output values of magnitude <= ~1, so the absolute 1e-4 is the check's own criterion)."""
    by_name = {v.name: v for v in build.variants}
    for name in names:
        variant = by_name[name]
        assert variant.check is not None and variant.check.passed, (name, variant.check)
        assert variant.offered, (name, variant.note)
        if variant.weight_dtype == "float32":
            assert variant.check.max_abs_diff <= 1e-4, (name, variant.check)


# ---------------------------------------------------------------- the translation, in Keras


def test_rewrites_are_exact_in_keras():
    model = forms_model()
    rebuilt = tfjs_model(model)
    classes = {type(layer).__name__ for layer in rebuilt.layers}
    # nothing TF.js lacks, and nothing training-only, is left
    assert not classes & {"Normalization", "CenterCrop", "Sequential", "Dropout", "GaussianNoise",
                          "RandomFlip", "SpatialDropout2D", "ActivityRegularization"}
    assert max_difference(model, rebuilt, sample_inputs(model)) <= 1e-5


def test_nested_models_are_flattened_and_training_only_layers_removed():
    model = tutorial_model()
    flat = inference_model(model)
    assert all(not isinstance(layer, keras.Model) for layer in flat.layers)
    assert not any(type(layer).__name__.startswith(("Random", "Dropout")) for layer in flat.layers)
    assert max_difference(model, flat, sample_inputs(model)) == 0.0


# ---------------------------------------------------------------- in real TF.js / LiteRT.js


def test_every_translated_form_matches_keras_in_tfjs(tmp_path):
    build = convert(forms_model(), tmp_path / "forms", engines=("tfjs",),
                    variants=("float32",))
    assert_checked(build, ["float32"])
    assert build.variant("float32").check.runtime.startswith("TF.js wasm")


def test_sequence_layers_load_and_match_in_tfjs(tmp_path):
    build = convert(sequence_model(), tmp_path / "seq", engines=("tfjs",), variants=("float32",))
    assert (build.input.height, build.input.width, build.input.channels) == (12, 10, 1)
    assert_checked(build, ["float32"])


def test_formerly_wrong_layers_are_now_right(tmp_path):
    """Keras 3's hard_sigmoid and bilinear upsampling loaded in TF.js and gave silently wrong
    answers (8e-2 and 2.3 off); now rewritten (the SDK's BrowserMLResize layer for the second)
    and matched in real TF.js, and the raw forms are refused by the topology writer."""
    from keras import layers

    inputs = image_input()
    x = layers.Activation("hard_sigmoid")(layers.Rescaling(1 / 40, offset=-3)(inputs))
    x = layers.UpSampling2D(2, interpolation="bilinear")(x)
    x = layers.Resizing(20, 12)(x)
    model = keras.Model(inputs, layers.Dense(3)(layers.Flatten()(x)))
    build = convert(model, tmp_path / "wrong", engines=("tfjs",), variants=("float32",))
    assert_checked(build, ["float32"])
    document = json.loads((tmp_path / "wrong" / "float32" / "model.json").read_text())
    classes = [layer["class_name"] for layer in document["modelTopology"]["config"]["layers"]]
    assert classes.count("BrowserMLResize") == 2 and "Activation" not in classes
    raw = json.loads(model.to_json())
    with pytest.raises(FormatError, match=r"hard_sigmoid, which TF\.js lacks or defines differently"):
        keras_to_tfjs_topology(raw)
    raw["config"]["layers"] = [layer for layer in raw["config"]["layers"]
                               if layer["class_name"] != "Activation"]
    with pytest.raises(FormatError, match="UpSampling2D with bilinear interpolation"):
        keras_to_tfjs_topology(raw)


def test_tutorial_model_converts_to_both_engines(tmp_path):
    """Full precision on both engines (int8 with --data is in benchmarks/bench_zoo.py)."""
    build = convert(tutorial_model(), tmp_path / "tutorial",
                    variants=("float32", "tflite-float32"))
    assert build.engine_notes == {}
    assert build.measured_on == "generated inputs"
    assert_checked(build, ["float32", "tflite-float32"])


def test_data_gives_accuracy_and_int8(tmp_path):
    """With --data: a seeded split's test images (accuracy, labels from the data) and an int8
    variant calibrated on its training images, checked in LiteRT.js."""
    from keras import layers

    keras.utils.set_random_seed(4)
    inputs = image_input()
    x = layers.Conv2D(4, 3, activation="relu")(layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, layers.Dense(8, activation="softmax")(
        layers.GlobalAveragePooling2D()(x)))
    # an untrained model's near-ties flip under int8: the budget is not what this test is about
    build = convert(model, tmp_path / "data", data="shapes", budget_pp=100,
                    variants=("float32", "tflite-float32", "tflite-int8"))
    assert build.measured_on == "test images" and build.labels[0] == "circle"
    assert "tflite-int8" not in build.engine_notes
    assert_checked(build, ["float32", "tflite-float32", "tflite-int8"])
    assert all(v.accuracy is not None for v in build.variants)


def calibrate_batchnorm(model, size: int) -> None:
    """Give an untrained network O(1) activations at every depth (else its outputs vanish to
    ~1e-16 and any comparison passes): BatchNormalization statistics from one seeded batch,
    variances floored at the layer median (see benchmarks/bench_zoo.py)."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(np.random.default_rng(0).uniform(0, 255, (8, size, size, 3)).astype("float32"),
          training=True)
    for layer in norms:
        variance = np.asarray(layer.moving_variance)
        layer.moving_variance.assign(np.maximum(variance, np.median(variance)))


@pytest.mark.parametrize("family,size", [("MobileNetV3Small", 32), ("EfficientNetB0", 32)])
def test_zoo_subset_matches_keras_in_tfjs(tmp_path, family, size):
    """A representative subset of keras.applications (hard_silu + x+c ops; Normalization + silu)
    at tiny inputs; benchmarks/bench_zoo.py runs every family."""
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, family)(input_shape=(size, size, 3), weights=None,
                                                classes=4, classifier_activation=None)
    calibrate_batchnorm(model, size)
    outputs = model.predict(sample_inputs(model), verbose=0)
    assert 0.1 < np.abs(outputs).max() < 100  # a live network, not vanishing or exploding
    build = convert(model, tmp_path / family, engines=("tfjs",), variants=("float32",))
    assert_checked(build, ["float32"])


# ---------------------------------------------------------------- from a .keras file to publish


def test_keras_file_converts_verifies_and_publishes(tmp_path):
    from keras import layers

    keras.utils.set_random_seed(3)
    inputs = image_input(height=SIZE, width=24)
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(4, 3, activation="relu")(x)
    model = keras.Model(inputs, layers.Dense(2, activation="softmax")(
        layers.GlobalAveragePooling2D()(x)))
    path = tmp_path / "mine.keras"
    model.save(path)
    out = tmp_path / "build" / "mine"
    build = convert(path, out, labels=["cat", "dog"], variants=("float32", "tflite-float32"))
    assert build.labels == ["cat", "dog"] and build.measured_on == "generated inputs"
    assert (build.input.height, build.input.width) == (SIZE, 24)
    assert build.origin["model"] == str(path.resolve())
    assert_checked(build, ["float32", "tflite-float32"])
    report = verify(out)  # finds the model from variants.json
    assert report.ok and {v.name for v in report.variants} == {"float32", "tflite-float32"}
    with Registry(Settings(data_dir=tmp_path / "data")) as registry:
        published = registry.publish(out, "mine", channel="stable")
    assert published.version == 1


def test_publish_refuses_a_build_whose_variants_were_never_checked(tmp_path):
    from keras import layers

    inputs = image_input()
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(inputs)))
    out = tmp_path / "build"
    convert(model, out, engines=("tfjs",), variants=("float32",))
    document = json.loads((out / "variants.json").read_text())
    document["variants"][0]["check"] = None
    (out / "variants.json").write_text(json.dumps(document))
    with Registry(Settings(data_dir=tmp_path / "data")) as registry, pytest.raises(
            FormatError, match="variant float32 was never loaded and checked in its runtime"):
        registry.publish(out, "unchecked")


def test_a_live_model_is_kept_for_verify(tmp_path):
    from keras import layers

    inputs = image_input()
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(inputs)))
    out = tmp_path / "live"
    build = convert(model, out, engines=("tfjs",), variants=("float32",))
    assert build.origin["model"] == "source.keras" and (out / "source.keras").is_file()
    assert read_build(out).source == "keras:live"
    assert verify(out).ok


# ---------------------------------------------------------------- one-line errors


def test_lambda_with_python_code_names_the_layer_and_the_way_out(tmp_path):
    from keras import layers

    inputs = image_input()
    x = layers.Lambda(lambda t: t * 2.0, name="doubler")(inputs)
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
    with pytest.raises(FormatError, match=r"'doubler' is a Lambda.*TFLite variants serve"):
        tfjs_model(model)
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelError, match=r"Lambda layer with Python code.*safe_mode=False") as info:
        convert(path, tmp_path / "out")
    assert "\n" not in str(info.value)


def test_unknown_custom_layer_says_how_to_register_it(tmp_path):
    @keras.saving.register_keras_serializable(package="i15test")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = image_input()
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(Twice()(inputs))))
    path = tmp_path / "custom.keras"
    model.save(path)
    keras.saving.get_custom_objects().pop("i15test>Twice")
    with pytest.raises(ModelError, match="register_keras_serializable") as info:
        convert(path, tmp_path / "out")
    assert "\n" not in str(info.value)


def test_a_custom_layer_tfjs_cannot_load_ships_tflite_only(tmp_path):
    class Twice(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = image_input()
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(
        Twice(name="twice")(keras.layers.Rescaling(1 / 255)(inputs)))))
    build = convert(model, tmp_path / "out", variants=("float32", "tflite-float32"))
    assert [v.name for v in build.variants] == ["tflite-float32"]
    assert "'twice' is a Twice" in build.engine_notes["tfjs"]
    assert_checked(build, ["tflite-float32"])


def test_an_op_tflite_cannot_export_is_one_line(tmp_path):
    from keras import layers

    inputs = image_input()
    x = layers.Lambda(lambda t: keras.ops.fft2((t, t))[0], name="fourier")(inputs)
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
    with pytest.raises(ModelError, match="no engine can serve this model") as info:
        convert(model, tmp_path / "out", variants=("float32", "tflite-float32"))
    message = str(info.value)
    assert "litert: the TFLite converter cannot export ops tf.Complex, tf.FFT2D (layer 'fourier')" \
        in message and "\n" not in message
    assert "tfjs: layer 'fourier' is a Lambda holding Python code" in message


def test_labels_must_match_the_outputs(tmp_path):
    inputs = image_input()
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ModelError, match="--labels gives 3 names but the model outputs 2"):
        convert(model, tmp_path / "out", labels=["a", "b", "c"])


def test_a_file_that_is_not_a_model(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ModelError, match="not a Keras model"):
        convert(path, tmp_path / "out")
    assert not Path(tmp_path / "out").exists()
