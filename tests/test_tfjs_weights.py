"""The TF.js weights format: uint8 / float16 encodings, manifest sizes, shards, safe reading."""

from __future__ import annotations

import numpy as np
import pytest

from browserml.errors import FormatError
from browserml.tfjs.weights import (
    FLOAT16_MAX,
    decode,
    dequantize_uint8,
    encode,
    quantize_uint8,
    read_weights,
    source_grid,
    stored_bytes,
    write_shards,
)


def random_arrays(count: int, seed: int = 0) -> list[np.ndarray]:
    """Many float32 arrays of varied size, offset and span: mixed-sign, all-positive,
    all-negative, constant, tiny ranges far from and around zero, and huge magnitudes."""
    rng = np.random.default_rng(seed)
    arrays = []
    kinds = ("mixed", "positive", "negative", "constant", "tiny", "tiny-at-zero", "huge", "zeros")
    for index in range(count):
        kind = kinds[index % len(kinds)]
        shape = tuple(int(d) for d in rng.integers(1, 9, size=rng.integers(1, 4)))
        x = rng.standard_normal(shape)
        if kind == "mixed":
            value = x * 10 ** rng.uniform(-3, 2) + rng.uniform(-0.5, 0.5)
        elif kind == "positive":
            value = np.abs(x) * 10 ** rng.uniform(-3, 2) + 10 ** rng.uniform(-3, 1)
        elif kind == "negative":
            value = -np.abs(x) * 10 ** rng.uniform(-3, 2) - 10 ** rng.uniform(-3, 1)
        elif kind == "constant":
            value = np.full(shape, rng.uniform(-5, 5))
        elif kind == "tiny":
            value = rng.uniform(-3, 3) + x * 1e-6
        elif kind == "tiny-at-zero":
            value = x * 1e-30
        elif kind == "huge":
            value = x * 1e30
        else:
            value = np.where(rng.random(shape) < 0.5, 0.0, x)
        arrays.append(np.asarray(value, dtype=np.float32))
    return arrays


ARRAYS = random_arrays(400)


def half_step_bound(value: np.ndarray, scale: float) -> float:
    """The promised uint8 error: half a step, plus float32 rounding of the result."""
    return scale / 2 * (1 + 1e-9) + float(np.spacing(np.float32(np.abs(value).max() + scale)))


@pytest.mark.parametrize("index", range(0, len(ARRAYS), 25))
def test_uint8_round_trip_is_within_half_a_step(index):
    # each parametrised case checks a slice of 25 arrays, so every kind is covered many times
    for value in ARRAYS[index:index + 25]:
        q, lo, scale = quantize_uint8(value)
        restored = dequantize_uint8(q, lo, scale)

        assert q.dtype == np.uint8 and q.shape == value.shape
        assert restored.dtype == np.float32 and restored.shape == value.shape
        error = np.abs(restored.astype(np.float64) - value.astype(np.float64)).max()
        assert error <= half_step_bound(value, scale), (value.min(), value.max(), scale)


@pytest.mark.parametrize("value", ARRAYS[::7], ids=lambda v: f"{v.min():.3g}..{v.max():.3g}")
def test_uint8_spans_exactly_the_tensors_range(value):
    # As the TF.js converter: 255 steps over [min, max], never a coarser step (which would pass
    # the half-step bound trivially), never widened to reach zero; nudged by at most half a step
    # only when the range covers zero, so that zero lands on the grid.
    _, lo, scale = quantize_uint8(value)
    vmin, vmax = float(value.min()), float(value.max())
    if vmin == vmax:
        assert (lo, scale) == (vmin, 1.0)
        return
    assert scale == pytest.approx((vmax - vmin) / 255, rel=1e-12)
    if vmin <= 0 <= vmax:
        assert abs(lo - vmin) <= scale / 2 * (1 + 1e-9)
        assert (-lo / scale) == pytest.approx(round(-lo / scale), abs=1e-6)  # zero on the grid
    else:
        assert lo == vmin


def test_uint8_of_already_quantized_values_is_lossless():
    # Weights that went through TF.js uint8 once (every model made by the official converter)
    # must come back unchanged when quantized again.
    rng = np.random.default_rng(5)
    for lo, hi in [(-0.87, 0.83), (4.05, 5.15), (-5.5, -0.2), (1e-14, 45.1), (0.0, 0.03)]:
        scale = (hi - lo) / 255
        if lo <= 0 <= hi:
            lo = -round(-lo / scale) * scale
        q = rng.integers(0, 256, 500).astype(np.uint8)
        q[:2] = (0, 255)
        once = dequantize_uint8(q, lo, scale)
        twice = dequantize_uint8(*quantize_uint8(once))
        assert np.abs(twice - once).max() <= float(np.spacing(np.abs(once).max())) * 2, (lo, hi)


def test_uint8_keeps_a_source_grid_that_is_not_ours(tmp_path):
    # A uint8 source (nsfwjs-style backbone) whose grid is not the one quantize_uint8 would pick
    # (its min is not nudged onto zero): written and read back as TF.js dequantizes, every value
    # comes back bit for bit; the old quantizer alone would re-round by up to half a step.
    rng = np.random.default_rng(11)
    for lo, scale in [(-0.3071, 0.0023417), (-1.0, 0.0077), (-2.75, 0.01931)]:
        q = rng.integers(0, 256, 4000).astype(np.uint8)
        value = dequantize_uint8(q, lo, scale).reshape(40, 100)

        group = write_shards(tmp_path, [encode("conv/kernel", value, "uint8")], 1 << 20)
        np.testing.assert_array_equal(read_weights(tmp_path, [group])["conv/kernel"], value)

        old = dequantize_uint8(*quantize_uint8(value))
        assert np.abs(old - value).max() > scale / 10  # what this path avoids


def test_uint8_of_an_ordinary_tensor_uses_the_half_step_quantizer():
    value = np.random.default_rng(12).standard_normal((64, 32)).astype(np.float32)
    assert source_grid(value) is None
    encoded = encode("dense/kernel", value, "uint8")
    q, lo, scale = quantize_uint8(value)
    assert (encoded.spec["quantization"]["min"], encoded.spec["quantization"]["scale"]) == (lo, scale)
    assert encoded.data == q.tobytes()


def test_source_grid_refuses_more_than_256_levels_or_uneven_gaps():
    assert source_grid(np.arange(257, dtype=np.float32) * 0.01) is None
    assert source_grid(np.array([0.0, 0.1, 0.25], dtype=np.float32)) is None
    assert source_grid(np.full(5, 0.3, dtype=np.float32)) is None  # constant: the old path's case
    assert source_grid(np.array([0.0, 0.5, np.inf], dtype=np.float32)) is None
    assert source_grid(np.array([0.0, 0.5, np.nan], dtype=np.float32)) is None


def test_zero_is_exactly_representable():
    checked = 0
    for value in [*ARRAYS, np.array([-0.3, 0.0, 0.7, 0.0], dtype=np.float32),
                  np.array([0.0, 1e-3, 5.0], dtype=np.float32),
                  np.array([-7.0, -1e-3, 0.0], dtype=np.float32)]:
        zeros = value == 0
        if not zeros.any() or value.min() == value.max():
            continue
        restored = dequantize_uint8(*quantize_uint8(value))
        assert np.all(restored[zeros] == 0.0), value
        checked += 1
    assert checked >= 40  # the generator really produced arrays with zeros in them


def test_uint8_encoding_decodes_to_the_dequantized_values():
    value = ARRAYS[0]
    encoded = encode("dense/kernel", value, "uint8")
    quant = encoded.spec["quantization"]

    assert encoded.spec["dtype"] == "float32" and quant["dtype"] == "uint8"
    assert quant["original_dtype"] == "float32"
    assert len(encoded.data) == value.size
    q, lo, scale = quantize_uint8(value)
    assert (quant["min"], quant["scale"]) == (lo, scale)
    np.testing.assert_array_equal(decode(encoded.spec, encoded.data), dequantize_uint8(q, lo, scale))


def test_float16_encoding_rounds_to_half_precision():
    value = np.random.default_rng(3).standard_normal((5, 7)).astype(np.float32) * 100
    encoded = encode("conv/kernel", value, "float16")

    assert encoded.spec["quantization"] == {"dtype": "float16", "original_dtype": "float32"}
    assert len(encoded.data) == 2 * value.size
    restored = decode(encoded.spec, encoded.data)
    np.testing.assert_array_equal(restored, value.astype(np.float16).astype(np.float32))
    assert np.abs(restored - value).max() <= np.abs(value).max() * 2.0**-11


@pytest.mark.parametrize("extreme", [FLOAT16_MAX * 1.001, -1e5, 3.0e38])
def test_float16_keeps_out_of_range_tensors_float32(extreme):
    value = np.array([[0.5, -2.0], [extreme, 1.0]], dtype=np.float32)
    encoded = encode("dense/bias", value, "float16")

    assert "quantization" not in encoded.spec and encoded.spec["dtype"] == "float32"
    assert len(encoded.data) == 4 * value.size
    np.testing.assert_array_equal(decode(encoded.spec, encoded.data), value)


def test_float16_keeps_the_largest_half_value():
    value = np.array([FLOAT16_MAX, -FLOAT16_MAX, 1.0], dtype=np.float32)
    encoded = encode("w", value, "float16")
    assert encoded.spec["quantization"]["dtype"] == "float16"
    np.testing.assert_array_equal(decode(encoded.spec, encoded.data), value)


def test_float32_encoding_is_little_endian_and_exact():
    value = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    encoded = encode("w", value, "float32")
    assert encoded.spec == {"name": "w", "shape": [2, 3], "dtype": "float32"}
    assert encoded.data == value.astype("<f4").tobytes()
    np.testing.assert_array_equal(decode(encoded.spec, encoded.data), value)


def test_unknown_storage_dtype_is_refused():
    with pytest.raises(FormatError, match="unknown weight dtype 'int4'"):
        encode("w", np.ones(3, dtype=np.float32), "int4")


# Bytes per element as tfjs-core's DTYPE_VALUE_SIZE_MAP defines them.
PLAIN_SIZES = {"float32": 4, "int32": 4, "bool": 1}
QUANTIZED_SIZES = {"uint8": 1, "uint16": 2, "float16": 2}


@pytest.mark.parametrize("shape", [[3, 4, 5], [7], [], [0, 9]])
@pytest.mark.parametrize("dtype", sorted(PLAIN_SIZES))
def test_stored_bytes_of_plain_dtypes(dtype, shape):
    elements = int(np.prod(shape))
    assert stored_bytes({"name": "w", "shape": shape, "dtype": dtype}) == elements * PLAIN_SIZES[dtype]


@pytest.mark.parametrize("shape", [[3, 4, 5], [7], [], [0, 9]])
@pytest.mark.parametrize("quantized", sorted(QUANTIZED_SIZES))
def test_stored_bytes_of_quantized_weights(quantized, shape):
    spec = {"name": "w", "shape": shape, "dtype": "float32",
            "quantization": {"dtype": quantized, "min": -1.0, "scale": 0.01}}
    assert stored_bytes(spec) == int(np.prod(shape)) * QUANTIZED_SIZES[quantized]


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
def test_stored_bytes_matches_what_encode_writes(dtype):
    for value in ARRAYS[:40]:
        encoded = encode("w", value, dtype)
        assert stored_bytes(encoded.spec) == len(encoded.data)


@pytest.mark.parametrize("spec, reason", [
    ({"name": "w", "shape": [2], "dtype": "float64"}, "unsupported dtype 'float64'"),
    ({"name": "w", "shape": [2], "dtype": "string"}, "unsupported dtype 'string'"),
    ({"name": "w", "shape": [2], "dtype": "float32", "quantization": {"dtype": "int4"}},
     "unsupported dtype 'int4'"),
    ({"name": "w", "shape": [2, -1], "dtype": "float32"}, "invalid shape"),
    ({"name": "w", "shape": [2.5], "dtype": "float32"}, "invalid shape"),
    ({"name": "w", "shape": "2x2", "dtype": "float32"}, "invalid shape"),
    ({"name": "w", "dtype": "float32"}, "invalid shape"),
])
def test_stored_bytes_refuses_unknown_dtypes_and_bad_shapes(spec, reason):
    with pytest.raises(FormatError, match=reason) as caught:
        stored_bytes(spec)
    assert "'w'" in str(caught.value)


@pytest.fixture
def mixed_weights():
    """Encoded weights of all three storage dtypes (about 5.6 kB in the stream)."""
    rng = np.random.default_rng(11)
    values = {f"layer{i}/kernel": rng.standard_normal(int(rng.integers(50, 400))).astype(np.float32)
              for i in range(12)}
    dtypes = ("float32", "float16", "uint8")
    encoded = [encode(name, value, dtypes[i % 3]) for i, (name, value) in enumerate(values.items())]
    return values, encoded


def test_write_shards_splits_the_stream_and_reads_back(tmp_path, mixed_weights):
    values, encoded = mixed_weights
    stream = b"".join(item.data for item in encoded)
    shard_bytes = 1000

    group = write_shards(tmp_path, encoded, shard_bytes)

    count = -(-len(stream) // shard_bytes)
    assert count > 3
    assert group["paths"] == [f"group1-shard{i}of{count}.bin" for i in range(1, count + 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(group["paths"])
    sizes = [(tmp_path / name).stat().st_size for name in group["paths"]]
    assert all(size <= shard_bytes for size in sizes)
    assert all(size == shard_bytes for size in sizes[:-1]) and sizes[-1] > 0
    assert b"".join((tmp_path / name).read_bytes() for name in group["paths"]) == stream
    assert group["weights"] == [item.spec for item in encoded]

    weights = read_weights(tmp_path, [group])
    assert list(weights) == list(values)
    for item in encoded:
        np.testing.assert_array_equal(weights[item.spec["name"]], decode(item.spec, item.data))
    for name, value in values.items():
        spec = next(item.spec for item in encoded if item.spec["name"] == name)
        if spec.get("quantization", {}).get("dtype") == "uint8":
            assert np.abs(weights[name] - value).max() <= half_step_bound(value,
                                                                         spec["quantization"]["scale"])
        elif "quantization" not in spec:
            np.testing.assert_array_equal(weights[name], value)


def test_write_shards_at_an_exact_multiple_has_no_empty_shard(tmp_path):
    encoded = [encode(f"w{i}", np.ones(25, dtype=np.float32), "float32") for i in range(4)]  # 400 B
    group = write_shards(tmp_path, encoded, 100)
    assert group["paths"] == [f"group1-shard{i}of4.bin" for i in range(1, 5)]
    assert [(tmp_path / p).stat().st_size for p in group["paths"]] == [100] * 4


def test_write_shards_in_one_shard_when_it_fits(tmp_path, mixed_weights):
    _, encoded = mixed_weights
    group = write_shards(tmp_path, encoded, 1 << 20)
    assert group["paths"] == ["group1-shard1of1.bin"]
    assert (tmp_path / "group1-shard1of1.bin").read_bytes() == b"".join(e.data for e in encoded)


@pytest.mark.parametrize("name", ["../outside.bin", "sub/shard.bin", "..", "", ".", "a\\b.bin",
                                  "/etc/hostname"])
def test_read_weights_refuses_paths_that_leave_the_folder(tmp_path, name):
    model_dir = tmp_path / "model"
    (model_dir / "sub").mkdir(parents=True)
    data = np.ones(4, dtype="<f4").tobytes()
    (tmp_path / "outside.bin").write_bytes(data)  # exists: refused for safety, not for absence
    (model_dir / "sub" / "shard.bin").write_bytes(data)
    manifest = [{"paths": [name], "weights": [{"name": "w", "shape": [4], "dtype": "float32"}]}]

    with pytest.raises(FormatError, match="must be a plain file name") as caught:
        read_weights(model_dir, manifest)
    assert repr(name) in str(caught.value)


def test_read_weights_names_a_missing_shard(tmp_path, mixed_weights):
    _, encoded = mixed_weights
    group = write_shards(tmp_path, encoded, 1000)
    (tmp_path / group["paths"][2]).unlink()
    with pytest.raises(FormatError, match="weight shard missing") as caught:
        read_weights(tmp_path, [group])
    assert str(tmp_path / group["paths"][2]) in str(caught.value)


@pytest.mark.parametrize("change", [-1, 3])
def test_read_weights_refuses_a_stream_of_the_wrong_length(tmp_path, mixed_weights, change):
    _, encoded = mixed_weights
    group = write_shards(tmp_path, encoded, 1000)
    last = tmp_path / group["paths"][-1]
    data = last.read_bytes()
    last.write_bytes(data[:change] if change < 0 else data + b"\0" * change)
    expected = sum(len(e.data) for e in encoded)

    with pytest.raises(FormatError, match=f"hold {expected + change} bytes.*need {expected}"):
        read_weights(tmp_path, [group])
