"""Keras 3 model configs translated to the Keras 2 topology tfjs-layers reads, and loaded by real
TF.js (Node) with the same outputs as Keras."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from keras import layers

from browserml.architectures import cnn, mobilenetv2
from browserml.errors import FormatError
from browserml.tfjs.layers_model import keras_weights, read_model_json, write_layers_model
from browserml.tfjs.topology import keras_to_tfjs_topology

KERAS3_ONLY_KEYS = {"module", "registered_name", "build_config", "batch_shape"}


def walk(value):
    """Yield every dict inside a JSON value."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def translate(model: keras.Model) -> dict:
    return keras_to_tfjs_topology(json.loads(model.to_json()))


def randomise_batch_norm(model: keras.Model, seed: int = 0) -> keras.Model:
    """Give BatchNormalization layers non-trivial statistics so parity tests see them."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            for variable in layer.weights:
                kind = variable.path.rsplit("/", 1)[-1]
                value = (rng.uniform(0.5, 1.5, variable.shape) if kind in ("gamma", "moving_variance")
                         else rng.normal(0.0, 0.1, variable.shape))
                variable.assign(value.astype(np.float32))
    return model


@pytest.fixture(scope="module")
def sequential() -> keras.Model:
    """The reference CNN (Rescaling, Conv2D, MaxPooling2D, Flatten, Dropout, Dense) at 16x16x1."""
    return cnn(16, 4, channels=1, seed=7)


@pytest.fixture(scope="module")
def functional() -> keras.Model:
    """A small residual model: two branches merged by Add, BatchNormalization, ReLU(6),
    DepthwiseConv2D, global pooling and a softmax head."""
    pixels = keras.Input((8, 8, 3), name="pixels")
    x = layers.Rescaling(1 / 255, name="rescale")(pixels)
    a = layers.Conv2D(6, 3, padding="same", use_bias=False, name="branch_a")(x)
    a = layers.BatchNormalization(name="bn_a")(a)
    a = layers.ReLU(6.0, name="relu6_a")(a)
    a = layers.DepthwiseConv2D(3, padding="same", name="depthwise_a")(a)
    b = layers.Conv2D(6, 1, name="branch_b")(x)
    merged = layers.Add(name="merge")([a, b])
    pooled = layers.GlobalAveragePooling2D(name="gap")(merged)
    out = layers.Dense(3, activation="softmax", name="classes")(pooled)
    return randomise_batch_norm(keras.Model(pixels, out, name="residual"), seed=1)


def test_sequential_translates_to_keras2_form(sequential):
    topology = translate(sequential)
    config = topology["config"]

    assert topology["class_name"] == "Sequential"
    assert topology["keras_version"].startswith("2.")
    assert [layer["class_name"] for layer in config["layers"]] == [
        "InputLayer", *(type(layer).__name__ for layer in sequential.layers)]
    first = config["layers"][0]["config"]
    assert first["batch_input_shape"] == [None, 16, 16, 1]
    for entry in walk(topology):
        assert not KERAS3_ONLY_KEYS & set(entry), entry
        assert entry.get("class_name") != "DTypePolicy"
    for layer in config["layers"]:
        assert layer["config"]["dtype"] == "float32"
    dense = next(layer for layer in config["layers"] if layer["config"]["name"] == "dense256")
    assert (dense["config"]["units"], dense["config"]["activation"]) == (256, "relu")


def test_functional_translates_inbound_nodes_to_keras2_form(functional):
    topology = translate(functional)
    config = topology["config"]
    by_name = {layer["name"]: layer for layer in config["layers"]}

    assert topology["class_name"] == "Model"
    assert config["input_layers"] == [["pixels", 0, 0]]
    assert config["output_layers"] == [["classes", 0, 0]]
    assert by_name["pixels"]["inbound_nodes"] == []
    assert by_name["pixels"]["config"]["batch_input_shape"] == [None, 8, 8, 3]
    assert by_name["merge"]["inbound_nodes"] == [[["depthwise_a", 0, 0, {}], ["branch_b", 0, 0, {}]]]
    assert by_name["branch_a"]["inbound_nodes"] == [[["rescale", 0, 0, {}]]]
    assert by_name["classes"]["inbound_nodes"] == [[["gap", 0, 0, {}]]]
    for entry in walk(topology):
        assert not KERAS3_ONLY_KEYS & set(entry), entry
        assert entry.get("class_name") not in ("DTypePolicy", "__keras_tensor__")


def test_weight_names_follow_tfjs_layers(functional):
    names = [name for name, _ in keras_weights(functional)]
    assert "depthwise_a/depthwise_kernel" in names  # tfjs-layers' name for Keras 3's "kernel"
    assert "depthwise_a/kernel" not in names
    assert {"bn_a/gamma", "bn_a/beta", "bn_a/moving_mean", "bn_a/moving_variance"} <= set(names)
    assert len(names) == len(functional.weights)


@pytest.mark.parametrize("make_layer, name, says", [
    (lambda: layers.GroupNormalization(groups=1, name="groups"), "groups",
     "is a GroupNormalization, which TF.js layers cannot load; the TFLite variants serve"),
    (lambda: layers.Lambda(lambda t: t * 2, name="doubler"), "doubler",
     "is a Lambda holding Python code, which TF.js cannot run; replace it with Keras layers"),
])
def test_unsupported_layer_is_refused_naming_it_and_the_way_out(make_layer, name, says):
    inputs = keras.Input((5, 3), name="sequence")
    outputs = layers.Dense(2, name="head")(make_layer()(inputs))
    model = keras.Model(inputs, outputs)

    with pytest.raises(FormatError, match=f"layer '{name}' {says}"):
        translate(model)


def test_unsupported_layer_in_a_sequential_model_is_refused():
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3, name="d"),
                              layers.Lambda(lambda t: t + 1, name="shift")])
    with pytest.raises(FormatError, match="'shift' is a Lambda"):
        translate(model)


def test_a_model_that_is_not_sequential_or_functional_is_refused():
    with pytest.raises(FormatError, match="a MyModel model cannot be written"):
        keras_to_tfjs_topology({"class_name": "MyModel", "config": {}})


def test_written_model_json_is_a_layers_model(tmp_path, sequential):
    files = write_layers_model(sequential, tmp_path, "float32", 1 << 20)
    document = read_model_json(tmp_path / "model.json")

    assert files[0] == tmp_path / "model.json"
    assert document["format"] == "layers-model"
    assert document["modelTopology"] == translate(sequential)
    [group] = document["weightsManifest"]
    assert [w["name"] for w in group["weights"]] == [name for name, _ in keras_weights(sequential)]
    assert group["paths"] == [p.name for p in files[1:]]


def keras_parity(model: keras.Model, folder, tfjs_predict, seed: int = 0,
                 varied: bool = True) -> float:
    """Write ``model`` as TF.js files, run them in TF.js and Keras on random pixels; return the
    largest difference. ``varied``: also check the outputs depend on the input (a real check)."""
    write_layers_model(model, folder, "float32", 1 << 20)
    shape = (3, *model.input_shape[1:])
    images = np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)
    want = model.predict(images, verbose=0).reshape(len(images), -1)
    got = tfjs_predict(folder, images)
    assert got.shape == want.shape
    if varied:
        assert np.ptp(want, axis=0).max() > 1e-3
    return float(np.abs(got - want).max())


def test_sequential_runs_in_tfjs_like_keras(tmp_path, sequential, tfjs_predict):
    assert keras_parity(sequential, tmp_path, tfjs_predict) <= 1e-5


def test_functional_runs_in_tfjs_like_keras(tmp_path, functional, tfjs_predict):
    assert keras_parity(functional, tmp_path, tfjs_predict) <= 1e-5


@pytest.fixture(scope="module")
def mobilenet() -> keras.Model:
    return randomise_batch_norm(mobilenetv2(32, 5, alpha=0.35, seed=3), seed=2)


def test_mobilenetv2_runs_in_tfjs_like_keras(tmp_path, tfjs_predict, mobilenet):
    # Untrained, its softmax barely depends on the input, but every one of its layers and
    # weights must load and compute the same numbers.
    assert keras_parity(mobilenet, tmp_path, tfjs_predict, varied=False) <= 1e-5


def test_mobilenetv2_blocks_run_in_tfjs_like_keras(tmp_path, tfjs_predict, mobilenet):
    # The first inverted-residual blocks (ZeroPadding, stride-2 and depthwise convolutions,
    # BatchNormalization, ReLU6, Add) still carry the input: a sharp parity check.
    blocks = keras.Model(mobilenet.inputs, mobilenet.get_layer("block_2_add").output)
    assert keras_parity(blocks, tmp_path, tfjs_predict) <= 1e-5


@pytest.mark.parametrize("activation", [
    lambda: layers.LeakyReLU(negative_slope=0.1, name="act"),
    lambda: layers.LeakyReLU(negative_slope=0.0, name="act"),
    lambda: layers.LeakyReLU(name="act"),
    lambda: layers.ReLU(max_value=0.5, name="act"),
], ids=["leaky-0.1", "leaky-0", "leaky-default", "relu-max"])
def test_activation_layers_keep_their_parameters_in_tfjs(tmp_path, tfjs_predict, activation):
    inputs = keras.Input((6,), name="x")
    hidden = layers.Dense(8, name="dense",
                          kernel_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=4))(inputs)
    model = keras.Model(inputs, activation()(hidden))
    assert keras_parity(model, tmp_path, tfjs_predict) <= 1e-5


@pytest.mark.parametrize("relu", [
    lambda: layers.ReLU(negative_slope=0.2, name="act"),
    lambda: layers.ReLU(threshold=0.5, name="act"),
], ids=["negative-slope", "threshold"])
def test_relu_options_tfjs_cannot_express_are_refused(relu):
    inputs = keras.Input((6,), name="x")
    model = keras.Model(inputs, relu()(layers.Dense(8, name="dense")(inputs)))
    with pytest.raises(FormatError, match="'act'"):
        translate(model)
