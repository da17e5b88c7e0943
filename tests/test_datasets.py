"""Datasets: image folders made of real files, the 10,000 built-in MNIST digits, synthetic shapes."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browserml import datasets
from browserml.datasets import Dataset, folder, shapes, split
from browserml.datasets.images import decode
from browserml.errors import DatasetError

SIZE = 16
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 160, 0)


def save(path: Path, image: Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but holds almost no data (a decompression bomb
    as far as its header goes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 8))
            + chunk(b"IEND", b""))


def corrupt_files(root: Path) -> list[str]:
    """Write the unreadable files a real folder collects; return their paths relative to root."""
    (root / "cats").mkdir(parents=True, exist_ok=True)
    (root / "cats" / "empty.png").write_bytes(b"")
    (root / "cats" / "notes.jpg").write_text("this is a text file with an image suffix\n")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), RED).save(buffer, "JPEG")
    (root / "dogs").mkdir(parents=True, exist_ok=True)
    (root / "dogs" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (root / "dogs" / "bomb.png").write_bytes(png_header_only(20_000, 20_000))
    return ["cats/empty.png", "cats/notes.jpg", "dogs/bomb.png", "dogs/truncated.jpg"]


@pytest.fixture
def two_classes(tmp_path) -> Path:
    """cats/ (3 red PNGs) and dogs/ (3 blue JPEGs) of assorted sizes."""
    root = tmp_path / "pets"
    for i, size in enumerate([(10, 10), (33, 21), (8, 40)]):
        save(root / "cats" / f"cat{i}.png", Image.new("RGB", size, RED))
        save(root / "dogs" / f"dog{i}.jpg", Image.new("RGB", size, BLUE), quality=95)
    return root


# ---------------------------------------------------------------- image folders: bad input


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="folder not found") as caught:
        folder.load(tmp_path / "nowhere", SIZE)
    assert str(tmp_path / "nowhere") in str(caught.value)


def test_a_file_is_not_a_folder(tmp_path):
    path = tmp_path / "data.zip"
    path.write_bytes(b"PK")
    with pytest.raises(DatasetError, match="not a folder"):
        folder.load(path, SIZE)


@pytest.mark.parametrize("content", ["nothing", "loose files", "hidden folder"])
def test_folder_without_class_sub_folders(tmp_path, content):
    root = tmp_path / "data"
    root.mkdir()
    if content == "loose files":
        save(root / "a.png", Image.new("RGB", (4, 4), RED))
    elif content == "hidden folder":
        save(root / ".cache" / "a.png", Image.new("RGB", (4, 4), RED))
    with pytest.raises(DatasetError, match="no class sub-folders; expected root/<label>/"):
        folder.load(root, SIZE)


def test_class_folders_without_images(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "b" / "README.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"no readable images in 2 class folder\(s\)$"):
        folder.load(root, SIZE)


def test_class_folders_with_only_corrupt_files_count_them(tmp_path):
    root = tmp_path / "data"
    corrupt = corrupt_files(root)
    with pytest.raises(DatasetError, match=rf"no readable images .*\({len(corrupt)} unreadable\)"):
        folder.load(root, SIZE)


def test_a_single_class_is_refused(tmp_path):
    root = tmp_path / "data"
    for i in range(3):
        save(root / "cats" / f"{i}.png", Image.new("RGB", (8, 8), RED))
    with pytest.raises(DatasetError, match="at least 2 classes, found 1 \\('cats'\\)"):
        datasets.load(str(root), input_size=SIZE)


def test_a_second_class_without_usable_images_is_still_a_single_class(tmp_path):
    root = tmp_path / "data"
    for i in range(3):
        save(root / "cats" / f"{i}.png", Image.new("RGB", (8, 8), RED))
    (root / "dogs").mkdir()
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match="found 1 \\('cats'\\)"):
        datasets.load(str(root), input_size=SIZE)


# ---------------------------------------------------------------- image folders: what loads


def test_folder_loads_every_image_with_its_label(two_classes):
    data = folder.load(two_classes, SIZE)

    assert data.class_names == ["cats", "dogs"]
    assert data.images.shape == (6, SIZE, SIZE, 3) and data.images.dtype == np.uint8
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.skipped == []
    np.testing.assert_array_equal(data.images[:3], np.broadcast_to(RED, (3, SIZE, SIZE, 3)))
    blue = data.images[3:].reshape(-1, 3).mean(axis=0)
    assert blue[2] > 240 and blue[0] < 15 and blue[1] < 15  # JPEG: close to blue, not exact


def test_corrupt_files_are_skipped_and_counted(two_classes):
    corrupt = corrupt_files(two_classes)
    (two_classes / "cats" / "labels.csv").write_text("ignored: not an image suffix\n")

    data = folder.load(two_classes, SIZE)

    assert len(data) == 6
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(data.skipped) == len(corrupt)
    assert [entry.split(":", 1)[0] for entry in data.skipped] == corrupt
    for entry in data.skipped:
        assert entry.split(":", 1)[1].strip(), f"no reason given: {entry}"


def test_skipped_files_survive_limit(two_classes):
    corrupt = corrupt_files(two_classes)
    data = datasets.load(str(two_classes), input_size=SIZE, limit=4, seed=3)
    assert len(data) == 4
    assert len(data.skipped) == len(corrupt)


@pytest.mark.parametrize("channels", [3, 1])
def test_modes_and_sizes_are_normalised(tmp_path, channels):
    root = tmp_path / "data"
    images = {
        "rgb-wide.png": (Image.new("RGB", (30, 10), GREEN), GREEN),
        "gray-tall.png": (Image.new("L", (7, 40), 200), (200, 200, 200)),
        "rgba.png": (Image.new("RGBA", (20, 20), (*BLUE, 128)), BLUE),
        "gray-alpha.png": (Image.new("LA", (16, 16), (90, 255)), (90, 90, 90)),
        "palette.png": (Image.new("RGB", (9, 9), RED).convert("P"), RED),
        "big.png": (Image.new("RGB", (300, 200), GREEN), GREEN),
        "tiny.png": (Image.new("RGB", (1, 1), BLUE), BLUE),
    }
    for name, (image, _) in images.items():
        save(root / "a" / name, image)

    for name, (_, colour) in images.items():
        pixels = decode(root / "a" / name, SIZE, channels)
        assert pixels.shape == (SIZE, SIZE, channels) and pixels.dtype == np.uint8, name
        expected = np.array(colour) if channels == 3 else np.array(
            [Image.new("RGB", (1, 1), colour).convert("L").getpixel((0, 0))])
        np.testing.assert_array_equal(pixels, np.broadcast_to(expected, pixels.shape), err_msg=name)


def test_webp_and_uppercase_suffixes_load(tmp_path):
    root = tmp_path / "data"
    save(root / "a" / "one.webp", Image.new("RGB", (12, 12), RED), lossless=True)
    save(root / "b" / "TWO.JPEG", Image.new("RGB", (12, 12), BLUE))
    data = folder.load(root, SIZE)
    assert data.labels.tolist() == [0, 1] and data.skipped == []


def halves(path: Path, orientation: int | None) -> Path:
    """A 40x20 JPEG, left half red and right half blue, with an optional EXIF orientation."""
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))
    options = {"quality": 95}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    return save(path, image, **options)


def dominant(region: np.ndarray) -> str:
    mean = region.reshape(-1, 3).mean(axis=0)
    return "red" if mean[0] > 200 and mean[2] < 60 else "blue" if mean[2] > 200 and mean[0] < 60 else "?"


def test_exif_orientation_is_applied(tmp_path):
    plain = decode(halves(tmp_path / "plain.jpg", None), SIZE, 3)
    rotated = decode(halves(tmp_path / "rotated.jpg", 6), SIZE, 3)  # 6: display rotated 90 deg CW
    quarter = SIZE // 4

    # Without EXIF the stored layout shows: red left, blue right.
    assert (dominant(plain[:, :quarter]), dominant(plain[:, -quarter:])) == ("red", "blue")
    # Orientation 6 turns it a quarter clockwise, as browsers display it: red top, blue bottom.
    assert (dominant(rotated[:quarter]), dominant(rotated[-quarter:])) == ("red", "blue")
    assert dominant(rotated[:, :quarter]) == "?"


def test_decode_reports_a_reason_for_each_bad_file(tmp_path):
    for name in corrupt_files(tmp_path):
        with pytest.raises(ValueError) as caught:
            decode(tmp_path / name, SIZE, 3)
        assert str(caught.value).strip(), name


# ---------------------------------------------------------------- mnist


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return datasets.mnist.load()


def test_mnist_has_the_10000_real_digits(digits):
    assert digits.images.shape == (10_000, 28, 28, 1) and digits.images.dtype == np.uint8
    assert digits.class_names == [str(d) for d in range(10)]
    counts = np.bincount(digits.labels, minlength=10)
    assert counts.sum() == 10_000 and counts.min() > 800  # every digit is well represented
    assert digits.images.min() == 0 and digits.images.max() == 255
    # real handwriting: most of each image is background, a few hundred pixels of ink
    ink = (digits.images > 127).reshape(len(digits), -1).mean(axis=1)
    assert 0.05 < ink.mean() < 0.3
    assert len({digits.images[i].tobytes() for i in range(0, 10_000, 50)}) == 200


def test_mnist_at_another_size_and_in_rgb():
    data = datasets.load("mnist", input_size=20, channels=3, limit=50, seed=1)
    assert data.images.shape == (50, 20, 20, 3)
    np.testing.assert_array_equal(data.images[..., 0], data.images[..., 2])


def test_split_is_stratified_and_deterministic(digits):
    first, again, other = split(digits, seed=5), split(digits, seed=5), split(digits, seed=6)

    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(first, name).labels, getattr(again, name).labels)
        np.testing.assert_array_equal(getattr(first, name).images, getattr(again, name).images)
    assert not np.array_equal(first.test.images, other.test.images)
    assert len(first.train) + len(first.val) + len(first.test) == 10_000
    counts = np.bincount(digits.labels, minlength=10)
    for part, share in ((first.test, 0.1), (first.val, 0.1)):
        assert np.bincount(part.labels, minlength=10).tolist() == [round(n * share) for n in counts]
    assert not np.array_equal(first.test.labels, np.sort(first.test.labels))  # shuffled


def test_split_is_a_partition():
    ids = np.arange(503)
    data = Dataset(ids.reshape(-1, 1, 1, 1), ids % 4, ["a", "b", "c", "d"])
    parts = split(data, seed=9)
    seen = np.concatenate([parts.train.images, parts.val.images, parts.test.images]).ravel()
    assert sorted(seen.tolist()) == ids.tolist()
    for part in (parts.train, parts.val, parts.test):
        np.testing.assert_array_equal(part.labels, part.images.ravel() % 4)


def test_limit_draws_a_fixed_subset_of_the_digits(digits):
    limited = datasets.load("mnist", input_size=28, limit=300, seed=4)
    same = datasets.load("mnist", input_size=28, limit=300, seed=4)
    other = datasets.load("mnist", input_size=28, limit=300, seed=8)

    assert len(limited) == 300 and len(np.unique(limited.labels)) == 10
    np.testing.assert_array_equal(limited.images, same.images)
    assert not np.array_equal(limited.images, other.images)
    full = {(int(label), image.tobytes()) for image, label in zip(digits.images, digits.labels,
                                                                    strict=True)}
    assert all((int(label), image.tobytes()) in full
               for image, label in zip(limited.images, limited.labels, strict=True))


@pytest.mark.parametrize("limit", [0, 1])
def test_limit_below_two_is_refused(limit):
    data = shapes.generate(8, input_size=8, seed=0)
    with pytest.raises(DatasetError, match=f"--limit {limit}"):
        datasets.first(data, limit, seed=0)


# ---------------------------------------------------------------- shapes


def test_shapes_are_deterministic_for_a_seed():
    first = shapes.generate(16, input_size=64, seed=3)
    np.testing.assert_array_equal(first.images, shapes.generate(16, input_size=64, seed=3).images)
    assert not np.array_equal(first.images, shapes.generate(16, input_size=64, seed=4).images)


@pytest.mark.parametrize("size", [24, 64, 101])
def test_shapes_at_any_size_are_balanced(size):
    data = datasets.load("shapes", input_size=size, limit=40, seed=2)
    classes = len(shapes.CLASSES)
    assert data.images.shape == (40, size, size, 3) and data.images.dtype == np.uint8
    assert data.class_names == shapes.CLASSES
    assert np.bincount(data.labels, minlength=classes).tolist() == [40 // classes] * classes


def test_shapes_classes_differ_and_images_vary():
    data = shapes.generate(64, input_size=32, seed=1)
    assert len({image.tobytes() for image in data.images}) == 64
    # a filled circle covers more of the image than a ring of the same radius, on average
    bright = (data.images.max(axis=-1) > 128).reshape(64, -1).mean(axis=1)
    circle, ring = shapes.CLASSES.index("circle"), shapes.CLASSES.index("ring")
    assert bright[data.labels == circle].mean() > bright[data.labels == ring].mean()


def test_shapes_in_grayscale():
    data = shapes.generate(8, input_size=32, seed=0, channels=1)
    assert data.images.shape == (8, 32, 32, 1)
