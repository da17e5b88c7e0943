"""The pipeline commands through the real console script: help, exit codes, one-line errors,
``convert --json`` and a small ``train`` on a folder with corrupt files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browserml.variants import read_build

BROWSERML = Path(sys.executable).parent / "browserml"


def run_cli(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    assert BROWSERML.is_file(), f"{BROWSERML}: console script not installed"
    return subprocess.run([str(BROWSERML), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """An expected failure: exit 1, nothing on stdout, exactly one line on stderr starting
    with ``error:``, no traceback; return that line."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def noise_png(seed: int, size: int = 12) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8))


def write_corrupt(folder: Path) -> list[str]:
    """Three unreadable files in ``folder``; return their names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image\n")
    buffer = io.BytesIO()
    noise_png(99, 48).save(buffer, "JPEG")
    (folder / "cut.jpg").write_bytes(buffer.getvalue()[:300])
    return ["cut.jpg", "empty.png", "notes.jpg"]


def image_folder(root: Path, per_class: dict[str, int]) -> Path:
    for k, (label, count) in enumerate(per_class.items()):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            noise_png(100 * k + i).save(root / label / f"{i}.png")
    return root


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("command, options", [
    ([], ["train", "convert", "verify", "import"]),
    (["train"], ["--data", "--arch", "--input-size", "--epochs", "--limit", "--out"]),
    (["convert"], ["MODEL", "--out", "--data", "--labels", "--engines", "--budget", "--json"]),
    (["verify"], ["BUILD_DIR", "--run", "--samples", "--backend"]),
    (["import"], ["MODEL_JSON", "--out", "--labels", "--value-range", "--json"]),
    (["gc"], ["--delete", "--json", "--data-dir", "dry run"]),
])
def test_help(command, options):
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: browserml {' '.join(command)}".rstrip() + " ")
    for option in options:
        assert option in result.stdout
    assert result.stderr == ""


# ---------------------------------------------------------------- expected failures


def test_train_on_a_missing_folder(tmp_path):
    result = run_cli("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert_one_line_error(result, str(tmp_path / "nowhere"), "folder not found")
    assert not (tmp_path / "run").exists()


def test_train_on_a_file(tmp_path):
    (tmp_path / "data.zip").write_bytes(b"PK")
    result = run_cli("train", "--data", tmp_path / "data.zip", "--out", tmp_path / "run")
    assert_one_line_error(result, "not a folder")


def test_train_on_an_empty_folder(tmp_path):
    (tmp_path / "data").mkdir()
    result = run_cli("train", "--data", tmp_path / "data", "--out", tmp_path / "run")
    assert_one_line_error(result, "no class sub-folders; expected root/<label>/*.png|jpg|webp")


def test_train_on_a_single_class(tmp_path):
    root = image_folder(tmp_path / "data", {"cats": 4})
    result = run_cli("train", "--data", root, "--out", tmp_path / "run")
    assert_one_line_error(result, "at least 2 classes, found 1 ('cats')")


def test_train_on_corrupt_files_only(tmp_path):
    write_corrupt(tmp_path / "data" / "a")
    write_corrupt(tmp_path / "data" / "b")
    result = run_cli("train", "--data", tmp_path / "data", "--out", tmp_path / "run")
    assert_one_line_error(result, "no readable images in 2 class folder(s) (6 unreadable)")


def test_train_on_too_few_images(tmp_path):
    root = image_folder(tmp_path / "data", {"a": 2, "b": 2})
    result = run_cli("train", "--data", root, "--out", tmp_path / "run")
    assert_one_line_error(result, "4 samples", "none left to train on")
    assert not (tmp_path / "run").exists()


def test_convert_a_missing_model(tmp_path):
    result = run_cli("convert", tmp_path / "runs" / "x", "--out", tmp_path / "build")
    assert_one_line_error(result, "not found; give a .keras or .h5 file, a SavedModel folder or a "
                                  "'browserml train' run directory")


def test_convert_an_incomplete_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "labels.json").write_text("[\"a\", \"b\"]")
    result = run_cli("convert", run_dir, "--out", tmp_path / "build")
    assert_one_line_error(result, "model.keras is missing")


def test_convert_an_unknown_variant(tmp_path, digits_run):
    result = run_cli("convert", digits_run, "--out", tmp_path / "build", "--variants", "float32,int3")
    assert_one_line_error(result, "unknown variant(s) int3")


def test_verify_without_a_build(tmp_path):
    result = run_cli("verify", tmp_path)
    assert_one_line_error(result, "variants.json: not found; run 'browserml convert'")


def test_import_bad_json(tmp_path):
    (tmp_path / "model.json").write_text("{\"modelTopology\": ")
    result = run_cli("import", tmp_path / "model.json", "--out", tmp_path / "out")
    assert_one_line_error(result, f"{tmp_path / 'model.json'}: not valid JSON")


def test_import_missing_shard(tmp_path, nsfwjs_model):
    model_json = tmp_path / "model.json"
    model_json.write_text((nsfwjs_model / "model.json").read_text())
    result = run_cli("import", model_json, "--out", tmp_path / "out")
    assert_one_line_error(result, f"{tmp_path / 'group1-shard1of1'}: weight shard missing")


def test_error_text_in_brackets_is_printed_as_is(tmp_path, make_build):
    # A Dense model on 4 numbers is not an image classifier: the message quotes the expected
    # shape in brackets, which must reach the user verbatim (not eaten as console markup).
    model_json = make_build() / "float32" / "model.json"
    result = run_cli("import", model_json, "--out", tmp_path / "out")
    assert_one_line_error(result, "need a fixed image input [null, H, W, 1|3], found [None, 4]")


# ---------------------------------------------------------------- commands that work


def test_convert_json(tmp_path, digits_run):
    out = tmp_path / "build"
    result = run_cli("convert", digits_run, "--out", out, "--variants", "float32,float16,uint8",
                     "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)  # stdout is the JSON object and nothing else

    assert list(payload) == ["variants", "engine_notes"]
    assert isinstance(payload["engine_notes"], dict)
    rows = payload["variants"]
    assert [row["name"] for row in rows] == ["float32", "float16", "uint8"]
    build = read_build(out)
    for row in rows:
        assert {"name", "bytes", "accuracy", "agreement"} <= set(row)
        variant = build.variant(row["name"])
        assert (row["bytes"], row["accuracy"], row["agreement"]) == (
            variant.bytes, variant.accuracy, variant.agreement)
    assert rows[0]["agreement"] == 1.0
    assert rows[2]["bytes"] < rows[1]["bytes"] < rows[0]["bytes"]


def test_convert_prints_the_variant_table(tmp_path, digits_run):
    result = run_cli("convert", digits_run, "--out", tmp_path / "build", "--variants", "float32")
    assert result.returncode == 0, result.stderr
    for column in ("variant", "bytes", "x of float32", "accuracy", "change", "agreement"):
        assert column in result.stdout
    assert "float32" in result.stdout and "1.000x" in result.stdout


def test_train_a_small_folder_counts_corrupt_files(tmp_path):
    root = image_folder(tmp_path / "data", {"cats": 7, "dogs": 7})
    corrupt = write_corrupt(root / "dogs")
    run_dir = tmp_path / "run"

    result = run_cli("train", "--data", root, "--limit", 12, "--epochs", 1, "--input-size", 16,
                     "--batch-size", 4, "--out", run_dir)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"skipped {len(corrupt)} unreadable file(s):" in result.stderr
    for name in corrupt:
        assert f"dogs/{name}" in result.stderr
    assert f"saved {run_dir}" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert sorted(entry.split(":", 1)[0] for entry in metrics["skipped"]) == [
        f"dogs/{name}" for name in corrupt]
    assert sum(metrics["samples"].values()) == 12
    info = json.loads((run_dir / "run.json").read_text())
    assert (info["limit"], info["epochs"], info["input_size"]) == (12, 1, 16)
    assert json.loads((run_dir / "labels.json").read_text()) == ["cats", "dogs"]
    assert (run_dir / "model.keras").is_file()
