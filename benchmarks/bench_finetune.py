"""Fine-tuning from real pretrained weights vs training from scratch (issue 16), in one run.

Both sides are MobileNetV2 at 224x224 built the same way (augmentation -> preprocessing ->
backbone -> global pooling -> dropout -> dense), trained by ``browserml train`` on the same small
image folder of real MNIST digits (20 per class, written as PNGs) with the same epoch budget:

* fine-tune: the backbone of the MobileNetV2 that the npm ``nsfwjs`` package ships (TF.js layers,
  Keras 2.2.4, uint8-quantized weights; trained on real photos), read back into Keras; phase 1
  trains the head with the backbone frozen, phase 2 unfreezes the top ``--fine-tune`` layers;
* scratch: random initialisation, every layer trainable, for phase 1 + phase 2's epochs.

Each side is scored on held-out real digits that neither saw (``--eval`` per class). Training
runs as a child process, so its wall time and peak RSS (``wait4``) are its own. The fine-tuned run
then goes through ``browserml convert`` (its test split replaced by the held-out digits) for the
uint8 TF.js and int8 LiteRT accuracy against float32, and ``browserml verify`` in Chromium.

Run from the repo root (about 55 minutes on 2 busy cores, most of it convert checking every
variant in Chromium on the held-out images):

    .venv/bin/python benchmarks/bench_finetune.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from browserml.bench.environment import cpu_info
from browserml.settings import PROJECT_ROOT

BROWSERML = Path(sys.executable).parent / "browserml"
AUGMENT = "rotation,zoom,contrast"  # no flip: a mirrored digit is another glyph


def pick_digits(per_class: int, held_out: int, seed: int):
    """Return ``(train, eval)``: disjoint real MNIST digits at 28x28, ``per_class`` and
    ``held_out`` of each class, drawn with ``seed``."""
    from browserml.datasets import mnist

    data = mnist.load(input_size=28, channels=1)
    rng = np.random.default_rng(seed)
    train, held = [], []
    for digit in range(10):
        index = rng.permutation(np.flatnonzero(data.labels == digit))
        train.append(index[:per_class])
        held.append(index[per_class : per_class + held_out])
    return data, np.concatenate(train), np.concatenate(held)


def write_folder(data, index: np.ndarray, root: Path) -> Path:
    """Write the chosen digits as ``root/<digit>/<n>.png`` (an image folder, as a team has)."""
    for n, i in enumerate(index):
        folder = root / data.class_names[data.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.images[i, :, :, 0]).save(folder / f"{n}.png")
    return root


def held_out_images(data, index: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the held-out digits as the model sees them: RGB uint8 at ``size``, as the folder
    loader makes them (same resize)."""
    from browserml.datasets.images import resize_batch

    pixels = np.repeat(data.images[index], 3, axis=-1)
    return resize_batch(pixels, size), data.labels[index]


def timed_child(args: list[str]) -> dict:
    """Run ``browserml`` with ``args``; return wall seconds and the child's peak RSS (MiB)."""
    with tempfile.TemporaryFile(mode="w+") as out:
        start = time.perf_counter()
        child = subprocess.Popen([str(BROWSERML), *args], stdout=out, text=True,
                                 env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0)
        stdout = out.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"browserml {' '.join(args)} failed")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "stdout": stdout.strip()}


def accuracy(run_dir: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Keras float32 top-1 accuracy of a run's model on the held-out digits."""
    import keras

    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    predictions = model.predict(images, batch_size=32, verbose=0).argmax(axis=1)
    return float((predictions == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=20, help="training images per class")
    parser.add_argument("--eval", type=int, default=50, help="held-out images per class")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=5, help="phase 1 epochs")
    parser.add_argument("--fine-tune-epochs", type=int, default=5, help="phase 2 epochs")
    parser.add_argument("--fine-tune", type=int, default=30, help="backbone layers to unfreeze")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--work", type=Path, default=None, help="keep files here (default: tmp)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    work.mkdir(parents=True, exist_ok=True)

    nsfw = work / "nsfwjs"
    subprocess.run(["node", str(PROJECT_ROOT / "scripts" / "nsfwjs-model.cjs"), "mobilenet_v2",
                    str(nsfw)], check=True, capture_output=True)
    data, train_index, held_index = pick_digits(args.per_class, args.eval, args.seed)
    folder = write_folder(data, train_index, work / "digits")
    eval_images, eval_labels = held_out_images(data, held_index, args.input_size)

    common = ["--data", folder, "--arch", "mobilenetv2", "--input-size", args.input_size,
              "--batch-size", args.batch_size, "--seed", args.seed, "--augment", AUGMENT,
              "--patience", 3]
    budget = args.epochs + args.fine_tune_epochs
    sides = {
        "fine-tune (nsfwjs backbone)": (work / "runs" / "finetune", [
            "--weights", nsfw / "model.json", "--input-range", "0,1", "--epochs", args.epochs,
            "--fine-tune", args.fine_tune, "--fine-tune-epochs", args.fine_tune_epochs]),
        "from scratch": (work / "runs" / "scratch", ["--weights", "none", "--epochs", budget]),
    }
    results = {}
    for name, (run_dir, extra) in sides.items():
        print(f"training: {name}", file=sys.stderr)
        timing = timed_child(["train", *map(str, common + extra), "--out", str(run_dir)])
        info = json.loads((run_dir / "run.json").read_text())
        results[name] = {
            "held_out_accuracy": accuracy(run_dir, eval_images, eval_labels),
            "epochs_run": [p["epochs_run"] for p in info["phases"]],
            "train_seconds": round(timing["seconds"], 1),
            "peak_rss_mib": round(timing["peak_rss_mib"]),
            "base_weights_sha256": info["base_weights_sha256"],
        }
        print(json.dumps({name: results[name]}), file=sys.stderr)

    tuned = sides["fine-tune (nsfwjs backbone)"][0]
    np.savez_compressed(tuned / "test.npz", images=eval_images, labels=eval_labels)
    build = work / "build" / "digits-finetuned"
    convert = timed_child(["convert", str(tuned), "--out", str(build), "--json", "--variants",
                           "float32,uint8,tflite-float32,tflite-int8"])
    variants = json.loads(convert["stdout"])["variants"]
    verify = subprocess.run([str(BROWSERML), "verify", str(build), "--run", str(tuned),
                             "--samples", "50", "--json"], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    verified = json.loads(verify.stdout) if verify.returncode == 0 else {"ok": False,
                                                                        "error": verify.stderr[-500:]}

    tuned_acc = results["fine-tune (nsfwjs backbone)"]["held_out_accuracy"]
    scratch_acc = results["from scratch"]["held_out_accuracy"]
    baseline = next(v for v in variants if v["name"] == "float32")["accuracy"]
    summary = {
        "setting": {"train_images": len(train_index), "per_class": args.per_class,
                    "held_out": len(held_index), "input_size": args.input_size,
                    "epoch_budget": budget, "phase1_epochs": args.epochs,
                    "phase2_epochs": args.fine_tune_epochs, "fine_tune_layers": args.fine_tune,
                    "batch_size": args.batch_size, "augment": AUGMENT, "seed": args.seed,
                    "cpu": cpu_info()},
        "sides": results,
        "fine_tune_minus_scratch_pp": round((tuned_acc - scratch_acc) * 100, 2),
        "variants": [{**v, "change_pp": round((v["accuracy"] - baseline) * 100, 2)}
                     for v in variants],
        "convert_seconds": round(convert["seconds"], 1),
        "verify": {"ok": verified.get("ok"), "samples": verified.get("samples"),
                   "variants": [{k: v.get(k) for k in ("name", "engine", "max_abs_diff", "passed",
                                                       "error")}
                                for v in verified.get("variants", [])]},
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
