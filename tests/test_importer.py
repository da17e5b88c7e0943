"""Import a TF.js model made elsewhere (the real nsfwjs MobileNetV2), and refuse broken ones
naming the exact file and reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from browserml.errors import FormatError, ModelError
from browserml.importer import VARIANTS, import_model
from browserml.settings import get_settings
from browserml.tfjs.layers_model import read_layers_weights, read_model_json
from browserml.tfjs.weights import read_weights
from browserml.variants import check_files, read_build


@pytest.fixture(scope="module")
def source(nsfwjs_model: Path) -> dict:
    return json.loads((nsfwjs_model / "model.json").read_text())


@pytest.fixture(scope="module")
def source_weights(nsfwjs_model: Path, source: dict) -> dict[str, np.ndarray]:
    return read_weights(nsfwjs_model, source["weightsManifest"])


def output_units(source: dict) -> int:
    """The class count of a Keras 2 style layers topology: its output layer's units."""
    config = source["modelTopology"]["model_config"]["config"]
    output = config["output_layers"][0][0]
    return next(layer["config"]["units"] for layer in config["layers"] if layer["name"] == output)


def test_import_writes_three_variants_without_accuracy(nsfwjs_build, nsfwjs_model):
    build = read_build(nsfwjs_build)

    assert [v.name for v in build.variants] == list(VARIANTS)
    assert build.source == f"import:{(nsfwjs_model / 'model.json').resolve()}"
    assert (build.input.height, build.input.width, build.input.channels) == (224, 224, 3)
    assert build.input.value_range == (0.0, 255.0)
    for variant in build.variants:
        assert variant.accuracy is None and variant.agreement is None
        assert (variant.engine, variant.format, variant.weight_dtype) == ("tfjs", "tfjs-layers",
                                                                           variant.name)
    check_files(nsfwjs_build, build)


def test_labels_match_the_models_outputs(nsfwjs_build, source):
    build = read_build(nsfwjs_build)
    assert build.labels == [f"class_{i}" for i in range(output_units(source))]


def test_given_labels_are_kept(tmp_path, nsfwjs_model, source):
    names = [f"label-{i}" for i in range(output_units(source))]
    build = import_model(nsfwjs_model / "model.json", tmp_path / "out", labels=names,
                         value_range=(-1.0, 1.0))
    assert build.labels == names and build.input.value_range == (-1.0, 1.0)
    assert build.name == "out"


def test_topology_is_kept_and_shards_respect_the_size(nsfwjs_build, source):
    limit = get_settings().shard_bytes
    for name in VARIANTS:
        document = read_model_json(nsfwjs_build / name / "model.json")
        assert document["modelTopology"] == source["modelTopology"]
        assert document["format"] == "layers-model"
        [group] = document["weightsManifest"]
        assert [w["name"] for w in group["weights"]] == [
            w["name"] for g in source["weightsManifest"] for w in g["weights"]]
        assert all((nsfwjs_build / name / p).stat().st_size <= limit for p in group["paths"])


def test_float32_holds_the_weights_tfjs_would_load(nsfwjs_build, source_weights):
    weights = read_layers_weights(nsfwjs_build / "float32")
    assert list(weights) == list(source_weights)
    for name, value in source_weights.items():
        np.testing.assert_array_equal(weights[name], value, err_msg=name)


def test_float16_and_uint8_are_derived_from_float32(nsfwjs_build, source_weights):
    float16 = read_layers_weights(nsfwjs_build / "float16")
    uint8 = read_layers_weights(nsfwjs_build / "uint8")
    specs = {s["name"]: s for g in read_model_json(nsfwjs_build / "uint8" / "model.json")
             ["weightsManifest"] for s in g["weights"]}
    for name, value in source_weights.items():
        np.testing.assert_array_equal(float16[name], value.astype(np.float16).astype(np.float32))
        scale = specs[name]["quantization"]["scale"]
        assert np.abs(uint8[name] - value).max() <= scale / 2 * (1 + 1e-6) + 1e-7, name
        # its authors' weights are already uint8: quantizing them again loses nothing
        assert np.abs(uint8[name] - value).max() <= 2 * float(np.spacing(np.abs(value).max())), name


def test_sizes_follow_the_storage_dtype(nsfwjs_build, source_weights):
    build = read_build(nsfwjs_build)
    elements = sum(v.size for v in source_weights.values())

    def weight_bytes(name: str) -> int:
        return sum(e.bytes for e in build.variant(name).files if e.role == "weights")

    assert weight_bytes("float32") == 4 * elements
    assert weight_bytes("float16") == 2 * elements
    assert weight_bytes("uint8") == elements


def test_imported_model_runs_in_tfjs(nsfwjs_build, tfjs_predict):
    images = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    outputs = {name: tfjs_predict(nsfwjs_build / name, images) for name in ("float32", "uint8")}
    for out in outputs.values():
        assert out.shape == (1, len(read_build(nsfwjs_build).labels))
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-4)  # softmax
    assert np.abs(outputs["float32"] - outputs["uint8"]).max() < 1e-4


# ---------------------------------------------------------------- broken input


@pytest.fixture
def broken(tmp_path, nsfwjs_model) -> Path:
    """A private copy of the nsfwjs model to corrupt; returns its model.json."""
    folder = tmp_path / "source"
    shutil.copytree(nsfwjs_model, folder)
    return folder / "model.json"


def edit(model_json: Path, change) -> None:
    document = json.loads(model_json.read_text())
    change(document)
    model_json.write_text(json.dumps(document))


def shard_of(model_json: Path, index: int = 0) -> Path:
    document = json.loads(model_json.read_text())
    return model_json.parent / document["weightsManifest"][0]["paths"][index]


def refused(model_json: Path, out: Path, match: str) -> str:
    with pytest.raises(FormatError, match=match) as caught:
        import_model(model_json, out)
    assert not out.exists(), "a refused import must not write anything"
    return str(caught.value)


def test_bad_json(broken, tmp_path):
    broken.write_text(broken.read_text()[:1000])
    assert refused(broken, tmp_path / "out", "not valid JSON").startswith(f"{broken}:")


def test_not_a_tfjs_model(broken, tmp_path):
    broken.write_text(json.dumps({"name": "nsfw", "layers": []}))
    message = refused(broken, tmp_path / "out", r"not a TF.js model \(no modelTopology\)")
    assert message.startswith(f"{broken}:")


def test_missing_shard(broken, tmp_path):
    shard = shard_of(broken)
    shard.unlink()
    assert refused(broken, tmp_path / "out", "weight shard missing").startswith(f"{shard}:")


def test_truncated_shard(broken, tmp_path):
    shard = shard_of(broken)
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[: size - 1000])
    message = refused(broken, tmp_path / "out", "truncated")
    assert message.startswith(f"{shard}:")
    assert f"hold {size - 1000} bytes" in message and f"need {size}" in message


@pytest.mark.parametrize("which", [0, 1, 2])
def test_truncated_shard_of_a_multi_shard_model_is_named(tmp_path, nsfwjs_build, which):
    folder = tmp_path / "source"
    shutil.copytree(nsfwjs_build / "float32", folder)
    model_json = folder / "model.json"
    assert len(json.loads(model_json.read_text())["weightsManifest"][0]["paths"]) == 3
    shard = shard_of(model_json, which)
    shard.write_bytes(shard.read_bytes()[:-4])
    assert refused(model_json, tmp_path / "out", "truncated").startswith(f"{shard}:")


def test_shard_longer_than_needed(broken, tmp_path):
    shard = shard_of(broken)
    shard.write_bytes(shard.read_bytes() + b"\0" * 16)
    assert refused(broken, tmp_path / "out", "longer than the weights need").startswith(f"{shard}:")


def test_shape_that_does_not_match_the_bytes(broken, tmp_path):
    total = shard_of(broken).stat().st_size
    edit(broken, lambda d: d["weightsManifest"][0]["weights"][0].update(shape=[3, 3, 3, 33]))
    message = refused(broken, tmp_path / "out", "shapes and dtypes need")
    assert f"hold {total} bytes" in message and f"need {total + 27}" in message


@pytest.mark.parametrize("change, reason", [
    (lambda w: (w.pop("quantization"), w.update(dtype="float64")), "unsupported dtype 'float64'"),
    (lambda w: w["quantization"].update(dtype="uint4"), "unsupported dtype 'uint4'"),
])
def test_unknown_dtype(broken, tmp_path, change, reason):
    edit(broken, lambda d: change(d["weightsManifest"][0]["weights"][0]))
    message = refused(broken, tmp_path / "out", reason)
    assert message.startswith(f"{broken}:") and "Conv1/kernel" in message


@pytest.mark.parametrize("name", ["../group1-shard1of1", "/tmp/group1-shard1of1", ".."])
def test_path_traversal_in_weight_paths(broken, tmp_path, name):
    shutil.copy(shard_of(broken), broken.parent.parent / "group1-shard1of1")  # a real file there
    edit(broken, lambda d: d["weightsManifest"][0].update(paths=[name]))
    message = refused(broken, tmp_path / "out", "is not a plain file name")
    assert message.startswith(f"{broken}:") and repr(name) in message


def test_a_model_without_an_image_input_is_refused(broken, tmp_path):
    def three_d(document):
        layers = document["modelTopology"]["model_config"]["config"]["layers"]
        layers[0]["config"]["batch_input_shape"] = [None, 224, 224]

    edit(broken, three_d)
    message = refused(broken, tmp_path / "out", "need a fixed image input")
    assert "[null, H, W, 1|3]" in message and "[None, 224, 224]" in message


def test_import_never_deletes_a_folder_that_is_not_a_build(nsfwjs_model, tmp_path):
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(ModelError, match="not a build directory"):
        import_model(nsfwjs_model / "model.json", precious)
    assert (precious / "holiday.jpg").exists()
