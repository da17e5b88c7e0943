"""Fine-tuning a pretrained backbone (issue 16): the TF.js -> Keras reader on the real nsfwjs
MobileNetV2, both training phases and what they freeze, augmentation kept out of the exported
model, imagenet weights through Keras's cache, one-line errors, and a fine-tuned run through
convert and verify in Chromium. Tiny inputs and one epoch: these test behaviour, not accuracy
(benchmarks/bench_finetune.py measures that)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from browserml.errors import ModelError

BROWSERML = Path(sys.executable).parent / "browserml"
SIZE = 32  # the smallest input keras.applications' MobileNetV2 accepts


def run_cli(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    assert BROWSERML.is_file(), f"{BROWSERML}: console script not installed"
    return subprocess.run([str(BROWSERML), *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


# TensorFlow's native runtime logs a few lines on import that no environment variable silences
# (TF 2.21, absl before InitializeLog). They are not BrowserML's output; errors that can be found
# before TensorFlow starts are, and these tests check that most do.
TF_RUNTIME_LOG = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} \d\d:\d\d:\d\d)")


def one_line_error(result: subprocess.CompletedProcess, *fragments: str,
                   after_tensorflow: bool = False) -> str:
    """Exit 1, one ``error:`` line on stderr, no traceback; return the line. Unless
    ``after_tensorflow``, stderr holds nothing else at all: the error came before TF started."""
    lines = [line for line in result.stderr.splitlines() if line.strip()
             and not (after_tensorflow and TF_RUNTIME_LOG.match(line))]
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr[-3000:]}"
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def layer_weights(model, name: str) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_layer(name).get_weights()]


# ---------------------------------------------------------------- TF.js -> Keras reader


@pytest.fixture(scope="module")
def nsfw_keras(nsfwjs_model):
    from browserml.tfjs.reader import read_keras_model

    return read_keras_model(nsfwjs_model / "model.json")


def test_reader_computes_what_tfjs_computes_on_nsfwjs(nsfw_keras, nsfwjs_model, tfjs_predict):
    images = np.random.default_rng(0).uniform(0, 1, (2, 224, 224, 3)).astype(np.float32)
    expected = tfjs_predict(nsfwjs_model, images)  # real TF.js 4.22 on the original files
    actual = nsfw_keras.predict(images, verbose=0)
    assert actual.shape == expected.shape == (2, 5)
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_reader_reads_back_what_our_writer_writes(nsfw_keras, tmp_path):
    from browserml.tfjs.layers_model import write_layers_model
    from browserml.tfjs.reader import read_keras_model

    write_layers_model(nsfw_keras, tmp_path, "float32", 4 * 1024 * 1024)
    again = read_keras_model(tmp_path / "model.json")
    assert [layer.name for layer in again.layers] == [layer.name for layer in nsfw_keras.layers]
    for a, b in zip(again.weights, nsfw_keras.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    images = np.random.default_rng(1).uniform(0, 1, (1, 224, 224, 3)).astype(np.float32)
    np.testing.assert_allclose(again.predict(images, verbose=0),
                               nsfw_keras.predict(images, verbose=0), atol=1e-6)


def test_reader_reads_a_sequential_model(tmp_path):
    """The reference CNN is a Sequential: our writer keeps it one, the reader rebuilds it."""
    from browserml.architectures import cnn
    from browserml.tfjs.layers_model import write_layers_model
    from browserml.tfjs.reader import read_keras_model

    model = cnn(16, 4, channels=1)
    write_layers_model(model, tmp_path, "float32", 4 * 1024 * 1024)
    assert json.loads((tmp_path / "model.json").read_text())["modelTopology"]["class_name"] == \
        "Sequential"
    again = read_keras_model(tmp_path)
    images = np.random.default_rng(3).uniform(0, 255, (3, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(again.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-6)


def test_reader_refuses_a_layer_keras_does_not_have(nsfwjs_model, tmp_path):
    import shutil

    from browserml.errors import FormatError
    from browserml.tfjs.reader import read_keras_model

    copy = tmp_path / "m"
    shutil.copytree(nsfwjs_model, copy)
    document = json.loads((copy / "model.json").read_text())
    document["modelTopology"]["model_config"]["config"]["layers"][1]["class_name"] = "Warp2D"
    (copy / "model.json").write_text(json.dumps(document))
    with pytest.raises(FormatError, match="'Warp2D' has no Keras 3 equivalent"):
        read_keras_model(copy / "model.json")


# ---------------------------------------------------------------- two phases from nsfwjs


@pytest.fixture(scope="module")
def nsfw_run(nsfwjs_model, tmp_path_factory) -> Path:
    """MobileNetV2 fine-tuned from the nsfwjs backbone on 40 real digits at 32x32: phase 1 one
    epoch on the head, phase 2 one epoch with the top 3 layers open (out_relu, Conv_1_bn,
    Conv_1: only Conv_1 trains, BatchNorm stays frozen); default augmentation (all four)."""
    from browserml.train import RunConfig, train

    out = tmp_path_factory.mktemp("finetune") / "nsfw"
    train(RunConfig(data="mnist", arch="mobilenetv2", input_size=SIZE, epochs=1, limit=40,
                    batch_size=16, weights=str(nsfwjs_model / "model.json"), input_range="0,1",
                    fine_tune=3), out)
    return out


def test_both_phases_run_and_train_what_they_should(nsfw_run):
    info = json.loads((nsfw_run / "run.json").read_text())
    head = 1280 * 10 + 10  # Dense(10) on MobileNetV2's 1280 pooled features
    phases = info["phases"]
    assert [p["name"] for p in phases] == ["head", "fine-tune top 3"]
    assert phases[0]["trainable_params"] == head
    assert phases[1]["trainable_params"] == head + 320 * 1280  # + Conv_1's 1x1 kernel
    assert phases[1]["learning_rate"] == pytest.approx(phases[0]["learning_rate"] * 0.1)
    for phase in phases:
        assert phase["epochs_run"] == 1 and len(phase["history"]["val_loss"]) == 1
    assert info["seed"] == 1234 and info["fine_tune"] == 3


def test_frozen_layers_keep_the_pretrained_weights(nsfw_run, nsfw_keras):
    import keras

    model = keras.models.load_model(nsfw_run / "model.keras", compile=False)
    for frozen in ("Conv1", "block_16_project", "Conv_1_bn"):  # BatchNorm statistics included
        for mine, theirs in zip(layer_weights(model, frozen), layer_weights(nsfw_keras, frozen),
                                strict=True):
            np.testing.assert_array_equal(mine, theirs)
    trained, original = layer_weights(model, "Conv_1")[0], layer_weights(nsfw_keras, "Conv_1")[0]
    assert not np.array_equal(trained, original)  # phase 2 moved the unfrozen layer


def test_run_records_the_base_weights_sha256(nsfw_run, nsfwjs_model):
    info = json.loads((nsfw_run / "run.json").read_text())
    digest = hashlib.sha256((nsfwjs_model / "model.json").read_bytes())
    manifest = json.loads((nsfwjs_model / "model.json").read_text())["weightsManifest"]
    for shard in manifest[0]["paths"]:
        digest.update((nsfwjs_model / shard).read_bytes())
    assert info["base_weights_sha256"] == digest.hexdigest()


def test_augmentation_is_absent_from_the_exported_model(nsfw_run, tmp_path, tfjs_predict):
    import keras

    from browserml.tfjs.layers_model import write_layers_model

    info = json.loads((nsfw_run / "run.json").read_text())
    assert info["augment"] == ["flip", "rotation", "zoom", "contrast"]
    model = keras.models.load_model(nsfw_run / "model.keras", compile=False)
    classes = {type(layer).__name__ for layer in model.layers}
    assert not {name for name in classes if name.startswith("Random")}, classes
    write_layers_model(model, tmp_path, "float32", 4 * 1024 * 1024)
    assert "Random" not in (tmp_path / "model.json").read_text()
    images = np.random.default_rng(2).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(tfjs_predict(tmp_path, images), model.predict(images, verbose=0),
                               atol=1e-5)


def test_class_weights_balance_an_unbalanced_folder():
    from browserml.finetune import class_weights

    assert class_weights(np.array([0, 0, 1, 1]), 2) is None
    weights = class_weights(np.array([0, 0, 0, 1]), 2)
    assert weights == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}


# ---------------------------------------------------------------- imagenet via Keras's cache


def test_imagenet_weights_come_from_keras_cache(tmp_path, monkeypatch):
    """A seeded weights=None backbone saved under the name keras.applications loads imagenet
    weights from, in $KERAS_HOME/models: training must use exactly those weights."""
    import keras

    from browserml.train import RunConfig, train

    cache = tmp_path / "keras" / "models"
    cache.mkdir(parents=True)
    keras.utils.set_random_seed(7)
    seeded = keras.applications.MobileNetV2(include_top=False, weights=None,
                                            input_shape=(SIZE, SIZE, 3))
    file = cache / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    seeded.save(file)  # a legacy .h5: load_weights reads its model_weights group
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    out = tmp_path / "run"
    train(RunConfig(data="shapes", arch="mobilenetv2", input_size=SIZE, epochs=1, limit=24,
                    batch_size=16, weights="imagenet", augment="none"), out)
    info = json.loads((out / "run.json").read_text())
    assert info["base_weights_file"] == str(file)
    assert info["base_weights_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    model = keras.models.load_model(out / "model.keras", compile=False)
    np.testing.assert_array_equal(layer_weights(model, "Conv1")[0],
                                  layer_weights(seeded, "Conv1")[0])


def test_imagenet_offline_names_the_file_and_where_it_goes(tmp_path):
    home = tmp_path / "keras-home"
    result = run_cli("train", "--data", "shapes", "--limit", 40, "--arch", "efficientnetb0",
                     "--weights", "imagenet", "--input-size", SIZE, "--out", tmp_path / "run",
                     env={"KERAS_HOME": str(home)})
    one_line_error(result, "efficientnetb0_notop.h5",
                   f"at {home / 'models' / 'efficientnetb0_notop.h5'}",
                   "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5")


# ---------------------------------------------------------------- one-line errors


def test_a_missing_weights_path(tmp_path):
    result = run_cli("train", "--data", "shapes", "--limit", 40, "--arch", "mobilenetv2",
                     "--input-size", SIZE, "--weights", tmp_path / "nowhere.keras", "--out", tmp_path / "run")
    one_line_error(result, "nowhere.keras: no such file")


def test_a_tfjs_model_of_another_architecture(tmp_path, nsfwjs_model):
    result = run_cli("train", "--data", "shapes", "--limit", 40, "--arch", "mobilenetv3small",
                     "--input-size", SIZE, "--weights", nsfwjs_model / "model.json",
                     "--out", tmp_path / "run")
    one_line_error(result, "not mobilenetv3small weights", "pass the --arch it was trained as",
                   after_tensorflow=True)


def test_a_weights_h5_of_the_backbone_is_loaded(tmp_path):
    import keras

    from browserml.architectures import transfer

    keras.utils.set_random_seed(11)
    backbone = keras.applications.MobileNetV2(include_top=False, weights=None,
                                              input_shape=(SIZE, SIZE, 3))
    path = tmp_path / "backbone.weights.h5"
    backbone.save_weights(path)
    built = transfer("mobilenetv2", input_size=SIZE, num_classes=3, weights=str(path))
    np.testing.assert_array_equal(layer_weights(built.model, "block_16_project")[0],
                                  layer_weights(backbone, "block_16_project")[0])


def test_a_weights_file_of_another_architecture(tmp_path):
    import keras

    other = keras.applications.MobileNetV3Small(include_top=False, weights=None,
                                                input_shape=(SIZE, SIZE, 3))
    path = tmp_path / "small.weights.h5"
    other.save_weights(path)
    with pytest.raises(ModelError, match="not mobilenetv2 weights"):
        from browserml.architectures import transfer

        transfer("mobilenetv2", input_size=SIZE, num_classes=3, weights=str(path))


def test_an_input_size_the_backbone_refuses(tmp_path):
    result = run_cli("train", "--data", "shapes", "--limit", 40, "--arch", "resnet50",
                     "--input-size", 16, "--out", tmp_path / "run")
    one_line_error(result, "resnet50 refuses input (16, 16, 3)", "--input-size")


def test_fine_tune_without_pretrained_weights(tmp_path):
    result = run_cli("train", "--data", "shapes", "--limit", 40, "--arch", "mobilenetv2",
                     "--input-size", SIZE, "--fine-tune", 10, "--out", tmp_path / "run")
    one_line_error(result, "--fine-tune needs pretrained --weights")


def test_an_unknown_augmentation(tmp_path):
    result = run_cli("train", "--data", "shapes", "--limit", 40, "--arch", "cnn",
                     "--augment", "flip,blur", "--out", tmp_path / "run")
    one_line_error(result, "--augment blur: unknown")


# ---------------------------------------------------------------- the result flows on


def test_a_fine_tuned_run_converts_and_verifies_in_both_engines(tmp_path):
    """A cnn trained from scratch, then fine-tuned from its own model.keras with augmentation:
    convert writes TF.js and LiteRT variants and verify runs them in Chromium."""
    from browserml.convert import convert
    from browserml.train import RunConfig, read_run, train
    from browserml.verify import verify

    base = tmp_path / "base"
    train(RunConfig(data="shapes", arch="cnn", input_size=16, epochs=1, limit=60), base)
    tuned = tmp_path / "tuned"
    train(RunConfig(data="shapes", arch="cnn", input_size=16, epochs=1, limit=60,
                    weights=str(base / "model.keras"), fine_tune=2, augment="flip,contrast"),
          tuned)
    assert read_run(tuned).info["phases"][1]["trainable_params"] > \
        read_run(tuned).info["phases"][0]["trainable_params"]
    build = convert(tuned, tmp_path / "build", name="tuned",
                    variants=("float32", "uint8", "tflite-float32", "tflite-int8"))
    assert {v.engine for v in build.variants} == {"tfjs", "litert"}
    report = verify(tmp_path / "build", tuned, samples=8)
    assert report.ok, report
