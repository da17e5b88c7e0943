"""Validation of TF.js models made elsewhere: every refusal names the exact file and the reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from browserml.errors import FormatError
from browserml.tfjs.validate import load_tfjs_model
from browserml.tfjs.weights import encode, write_shards

LAYERS_TOPOLOGY = {"class_name": "Sequential", "config": {"name": "m", "layers": []},
                   "keras_version": "2.15.0", "backend": "tensorflow"}
GRAPH_TOPOLOGY = {"node": [{"name": "x", "op": "Placeholder"}], "versions": {"producer": 1}}
SHARD_BYTES = 400


def write_model(folder: Path, *, topology: dict | None = None, fmt: str | None = "layers-model",
                weights: int = 6) -> Path:
    """Write a TF.js model whose weights span several 400-byte shards (the last one shorter);
    return its model.json."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    encoded = [encode(f"layer{i}/kernel", rng.standard_normal(130 + i).astype(np.float32),
                      ("float32", "uint8", "float16")[i % 3]) for i in range(weights)]
    group = write_shards(folder, encoded, SHARD_BYTES)
    document = {"modelTopology": topology or LAYERS_TOPOLOGY, "weightsManifest": [group]}
    if fmt:
        document["format"] = fmt
    (folder / "model.json").write_text(json.dumps(document))
    return folder / "model.json"


def edit_manifest(model_json: Path, change) -> None:
    document = json.loads(model_json.read_text())
    change(document)
    model_json.write_text(json.dumps(document))


def shard_paths(model_json: Path) -> list[Path]:
    document = json.loads(model_json.read_text())
    return [model_json.parent / name for name in document["weightsManifest"][0]["paths"]]


@pytest.fixture
def model_json(tmp_path) -> Path:
    path = write_model(tmp_path / "model")
    assert len(shard_paths(path)) >= 3  # the tests below need a first, middle and last shard
    return path


def test_valid_model_loads_with_its_shards(model_json):
    model = load_tfjs_model(model_json)
    assert model.kind == "layers-model"
    assert model.shards == shard_paths(model_json)
    assert [spec["name"] for spec in model.weight_specs] == [f"layer{i}/kernel" for i in range(6)]
    assert load_tfjs_model(model_json.parent).path == model_json  # a folder means its model.json


@pytest.mark.parametrize("topology, fmt, kind", [
    (LAYERS_TOPOLOGY, None, "layers-model"),
    ({"model_config": LAYERS_TOPOLOGY}, None, "layers-model"),
    (GRAPH_TOPOLOGY, None, "graph-model"),
    (GRAPH_TOPOLOGY, "graph-model", "graph-model"),
])
def test_model_kind_from_format_or_topology(tmp_path, topology, fmt, kind):
    assert load_tfjs_model(write_model(tmp_path, topology=topology, fmt=fmt)).kind == kind


def test_a_topology_of_unknown_shape_is_refused(tmp_path):
    path = write_model(tmp_path, topology={"something": "else"}, fmt=None)
    with pytest.raises(FormatError, match="cannot tell a layers model from a graph model") as caught:
        load_tfjs_model(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("text, reason", [
    ("{\"modelTopology\": ", "not valid JSON"),
    ("\xff\xfe not utf-8", "not valid JSON"),
    ("[1, 2, 3]", "not a TF.js model"),
    ("{\"weightsManifest\": []}", "not a TF.js model"),
    ("{\"modelTopology\": {}, \"weightsManifest\": {}}", "weightsManifest must be a list"),
    ("{\"modelTopology\": {}, \"weightsManifest\": [{\"paths\": \"x\"}]}",
     "weightsManifest must be a list"),
])
def test_unreadable_model_json_is_refused_naming_it(tmp_path, text, reason):
    path = tmp_path / "model.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(FormatError, match=reason) as caught:
        load_tfjs_model(path)
    assert str(caught.value).startswith(f"{path}:")


def test_missing_model_json_is_refused(tmp_path):
    with pytest.raises(FormatError, match="not found") as caught:
        load_tfjs_model(tmp_path / "nothing" / "model.json")
    assert str(tmp_path / "nothing" / "model.json") in str(caught.value)


@pytest.mark.parametrize("which", [0, 1, -1], ids=["first", "middle", "last"])
def test_missing_shard_is_named(model_json, which):
    shard = shard_paths(model_json)[which]
    shard.unlink()
    with pytest.raises(FormatError, match="weight shard missing") as caught:
        load_tfjs_model(model_json)
    assert str(caught.value).startswith(f"{shard}:")


@pytest.mark.parametrize("which", [0, 1, -1], ids=["first", "middle", "last"])
def test_truncated_shard_is_named(model_json, which):
    shard = shard_paths(model_json)[which]
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.raises(FormatError, match="truncated") as caught:
        load_tfjs_model(model_json)
    assert str(caught.value).startswith(f"{shard}:")


@pytest.mark.parametrize("which", [0, 1, -1], ids=["first", "middle", "last"])
def test_shard_longer_than_needed_is_named(model_json, which):
    shard = shard_paths(model_json)[which]
    shard.write_bytes(shard.read_bytes() + b"\0" * 5)
    with pytest.raises(FormatError, match="longer than the weights need") as caught:
        load_tfjs_model(model_json)
    assert str(caught.value).startswith(f"{shard}:")


def test_shape_that_needs_more_bytes_than_the_shards_hold_is_refused(model_json):
    total = sum(p.stat().st_size for p in shard_paths(model_json))
    edit_manifest(model_json, lambda d: d["weightsManifest"][0]["weights"][0].update(shape=[140]))

    with pytest.raises(FormatError) as caught:
        load_tfjs_model(model_json)
    message = str(caught.value)
    assert f"hold {total} bytes" in message and f"need {total + 10 * 4}" in message


@pytest.mark.parametrize("change, reason", [
    (lambda w: w.update(dtype="float64"), "unsupported dtype 'float64'"),
    (lambda w: w.update(quantization={"dtype": "int4", "min": 0, "scale": 1}),
     "unsupported dtype 'int4'"),
    (lambda w: w.update(shape=[-1, 130]), "invalid shape"),
    (lambda w: w.pop("shape"), "without name/shape"),
])
def test_bad_weight_entries_are_refused_naming_the_model_json(model_json, change, reason):
    edit_manifest(model_json, lambda d: change(d["weightsManifest"][0]["weights"][0]))
    with pytest.raises(FormatError, match=reason) as caught:
        load_tfjs_model(model_json)
    assert str(caught.value).startswith(f"{model_json}:")


@pytest.mark.parametrize("name", ["../secret.bin", "/etc/hostname", "..", "sub\\x.bin", ""])
def test_weight_paths_that_leave_the_folder_are_refused(model_json, name):
    (model_json.parent.parent / "secret.bin").write_bytes(shard_paths(model_json)[0].read_bytes())
    edit_manifest(model_json, lambda d: d["weightsManifest"][0]["paths"].__setitem__(0, name))

    with pytest.raises(FormatError, match="is not a plain file name") as caught:
        load_tfjs_model(model_json)
    assert str(caught.value).startswith(f"{model_json}:") and repr(name) in str(caught.value)


def test_model_json_with_another_file_name_is_named_in_errors(tmp_path):
    model_json = write_model(tmp_path)
    renamed = model_json.rename(tmp_path / "nsfw-model.json")
    edit_manifest(renamed, lambda d: d["weightsManifest"][0]["weights"][0].update(dtype="float64"))
    with pytest.raises(FormatError) as caught:
        load_tfjs_model(renamed)
    assert str(caught.value).startswith(f"{renamed}:")


def test_weights_group_without_shards_is_refused(model_json):
    edit_manifest(model_json, lambda d: d["weightsManifest"][0].update(paths=[]))
    with pytest.raises(FormatError, match="lists no shard files") as caught:
        load_tfjs_model(model_json)
    assert str(caught.value).startswith(f"{model_json}:")
