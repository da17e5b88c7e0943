"""TF.js weights: the manifest, binary shards, and float16 / uint8 quantization.

Format (``tfjs-core/src/io/types.ts``): ``weightsManifest`` is a list of groups; each group has
``paths`` (shard files, concatenated in order) and ``weights`` (name, shape, dtype, optional
``quantization``), laid out back to back in that byte stream, little-endian. Quantized weights carry
``{"dtype": "uint8" | "float16", "min", "scale", "original_dtype"}``; TF.js dequantizes uint8 as
``q * scale + min`` at load, so uint8 shrinks the download, not the inference cost.

Each group we write also carries ``"sha256"``: the hex digest of each shard, in ``paths`` order (a
key TF.js ignores). ``model.json`` is itself content-addressed in the manifest, so it vouches for
its shards: a client that checks them loads only a whole, self-consistent variant (issue 17).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FormatError

WEIGHT_DTYPES = ("float32", "float16", "uint8")
# Bytes per element of each stored dtype TF.js knows (``DTYPE_VALUE_SIZE_MAP`` in tfjs-core).
STORED_BYTES = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "uint16": 2, "float16": 2,
                "int8": 1, "string": None, "complex64": 8}
FLOAT16_MAX = float(np.finfo(np.float16).max)
# How far (in steps) a value may sit from the grid that source_grid() finds: float32 rounding of
# ``q * scale + min`` only, never a re-rounding (quantize_uint8 errs by up to half a step).
GRID_TOLERANCE = 1e-4


@dataclass
class Encoded:
    """One weight ready for the shard stream: its manifest entry and its bytes."""

    spec: dict
    data: bytes


def affine_range(lo: float, hi: float, levels: int = 255) -> tuple[float, float]:
    """Given a tensor's min and max, return ``(min, scale)`` for uint8 over exactly that range.

    As the TF.js converter does (``_get_affine_quantization_range``): when the range covers zero
    it is nudged by at most half a step so zero is exactly representable (zero weights and padding
    survive); a range that does not cover zero is not widened to reach it, which would waste
    resolution (BatchNormalization variances, for instance, are all positive)."""
    if hi == lo:
        return lo, 1.0
    scale = (hi - lo) / levels
    if not lo <= 0.0 <= hi:
        return lo, scale
    zero_point = round(-lo / scale)
    return -zero_point * scale, scale


def quantize_uint8(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Given float32 values, return ``(q, min, scale)`` with ``q`` uint8; dequantizing gives each
    value within half a step (``scale / 2``) of the original."""
    lo, scale = affine_range(float(values.min()), float(values.max()))
    q = np.rint((values.astype(np.float64) - lo) / scale)
    return np.clip(q, 0, 255).astype(np.uint8), lo, scale


def source_grid(values: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """Given float32 values, return ``(q, min, scale)`` that dequantizes back to exactly the same
    float32 values when they already lie on a 256-level affine grid, else None.

    Why: weights read from a uint8-quantized model (a pretrained TF.js backbone such as nsfwjs,
    frozen while fine-tuning) are already ``q * scale + min`` on the source's grid. Quantizing
    them again with :func:`quantize_uint8` is lossless only when that grid is the one it would
    pick itself (zero nudged onto the grid, as the TF.js converter does); any other grid would be
    rounded a second time, up to half a step on every weight. Detection: at most 256 distinct
    values, all whole multiples of the smallest gap apart; ``(min, scale)`` is then chosen inside
    every value's float32 rounding interval (two unknowns, ternary search on the scale), so that
    ``float32(q * scale + min)`` -- TF.js's dequantization -- gives each value back bit for bit
    where float32 allows, and within ``GRID_TOLERANCE`` steps otherwise.
    """
    levels = np.unique(values).astype(np.float64)
    if not 2 <= levels.size <= 256 or not np.isfinite(levels).all():
        return None
    steps = (levels - levels[0]) / np.diff(levels).min()
    codes = np.rint(steps)
    if codes[-1] > 255 or np.abs(steps - codes).max() > 0.25:
        return None
    as_f32 = levels.astype(np.float32)
    low = (levels + np.nextafter(as_f32, np.float32(-np.inf)).astype(np.float64)) / 2
    high = (levels + np.nextafter(as_f32, np.float32(np.inf)).astype(np.float64)) / 2

    def room(scale: float) -> float:  # width of the feasible ``min`` interval at this scale
        return float(np.min(high - codes * scale) - np.max(low - codes * scale))

    a, b = (low[-1] - high[0]) / codes[-1], (high[-1] - low[0]) / codes[-1]
    for _ in range(100):  # room() is concave in scale
        m1, m2 = a + (b - a) / 3, b - (b - a) / 3
        a, b = (m1, b) if room(m1) < room(m2) else (a, m2)
    scale = (a + b) / 2
    lo = float(np.min(high - codes * scale) + np.max(low - codes * scale)) / 2
    q = codes[np.searchsorted(levels, values.astype(np.float64))].astype(np.uint8)
    if np.abs(dequantize_uint8(q, lo, scale) - values).max() > scale * GRID_TOLERANCE:
        return None
    return q, lo, float(scale)


def dequantize_uint8(q: np.ndarray, lo: float, scale: float) -> np.ndarray:
    """Return float32 values as TF.js computes them at load: ``q * scale + min``."""
    return (q.astype(np.float64) * scale + lo).astype(np.float32)


def encode(name: str, value: np.ndarray, dtype: str) -> Encoded:
    """Given a float32 weight and a storage dtype, return its manifest entry and bytes.

    float16 keeps a tensor in float32 when it has values beyond float16's range (they would
    become infinities), so a float16 variant can never be silently wrong.
    """
    value = np.ascontiguousarray(value, dtype=np.float32)
    spec: dict = {"name": name, "shape": list(value.shape), "dtype": "float32"}
    if dtype == "float32" or value.size == 0:
        return Encoded(spec, value.astype("<f4").tobytes())
    if dtype == "float16":
        if np.abs(value).max() > FLOAT16_MAX:
            return Encoded(spec, value.astype("<f4").tobytes())
        spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
        return Encoded(spec, value.astype("<f2").tobytes())
    if dtype == "uint8":
        q, lo, scale = source_grid(value) or quantize_uint8(value)
        spec["quantization"] = {"dtype": "uint8", "min": lo, "scale": scale,
                                "original_dtype": "float32"}
        return Encoded(spec, q.tobytes())
    raise FormatError(f"unknown weight dtype {dtype!r}: use one of {', '.join(WEIGHT_DTYPES)}")


def shard_names(count: int, group: int = 1) -> list[str]:
    """Return the TF.js converter's shard file names: ``group1-shard1of3.bin`` ..."""
    return [f"group{group}-shard{i}of{count}.bin" for i in range(1, count + 1)]


def write_shards(out_dir: Path, encoded: Iterable[Encoded], shard_bytes: int) -> dict:
    """Write the weights as one group of shards of at most ``shard_bytes``; return the group's
    manifest entry ``{"paths": [...], "weights": [...], "sha256": [...]}``."""
    encoded = list(encoded)
    stream = b"".join(item.data for item in encoded)
    count = max(1, -(-len(stream) // shard_bytes))
    paths = shard_names(count)
    digests = []
    for index, path in enumerate(paths):
        shard = stream[index * shard_bytes : (index + 1) * shard_bytes]
        (out_dir / path).write_bytes(shard)
        digests.append(hashlib.sha256(shard).hexdigest())
    return {"paths": paths, "weights": [item.spec for item in encoded], "sha256": digests}


def stored_bytes(spec: dict) -> int:
    """Given a manifest weight entry, return how many bytes it occupies in the shard stream."""
    dtype = spec.get("quantization", {}).get("dtype", spec.get("dtype"))
    size = STORED_BYTES.get(dtype)
    if size is None:
        raise FormatError(f"weight {spec.get('name')!r}: unsupported dtype {dtype!r}")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise FormatError(f"weight {spec.get('name')!r}: invalid shape {shape!r}")
    return int(np.prod(shape, dtype=np.int64)) * size


def decode(spec: dict, data: bytes) -> np.ndarray:
    """Given a manifest entry and exactly its bytes, return the (dequantized) array."""
    shape = spec["shape"]
    quant = spec.get("quantization")
    if quant is None:
        dtype = {"float32": "<f4", "int32": "<i4", "bool": "u1"}.get(spec["dtype"])
        if dtype is None:
            raise FormatError(f"weight {spec['name']!r}: unsupported dtype {spec['dtype']!r}")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if quant["dtype"] == "float16":
        return np.frombuffer(data, dtype="<f2").astype(np.float32).reshape(shape)
    if quant["dtype"] in ("uint8", "uint16"):
        raw = np.frombuffer(data, dtype="u1" if quant["dtype"] == "uint8" else "<u2")
        return dequantize_uint8(raw, quant["min"], quant["scale"]).reshape(shape)
    raise FormatError(f"weight {spec['name']!r}: unsupported quantization {quant['dtype']!r}")


def read_weights(model_dir: Path, manifest: list[dict]) -> dict[str, np.ndarray]:
    """Given a model folder and its ``weightsManifest``, return ``{name: array}``.

    Every shard must exist and the stream must be exactly as long as the weight specs say;
    otherwise FormatError names the file and the difference.
    """
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        stream = b"".join(read_shard(model_dir, path) for path in group["paths"])
        expected = sum(stored_bytes(spec) for spec in group["weights"])
        if len(stream) != expected:
            raise FormatError(
                f"{model_dir}: shards {', '.join(group['paths'])} hold {len(stream)} bytes, "
                f"the weight shapes and dtypes need {expected}"
            )
        offset = 0
        for spec in group["weights"]:
            size = stored_bytes(spec)
            weights[spec["name"]] = decode(spec, stream[offset : offset + size])
            offset += size
    return weights


def read_shard(model_dir: Path, name: str) -> bytes:
    """Return one shard's bytes, or raise FormatError naming it when it is missing or unsafe."""
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise FormatError(f"{model_dir}: weight path {name!r} must be a plain file name")
    path = model_dir / name
    if not path.is_file():
        raise FormatError(f"{path}: weight shard missing")
    return path.read_bytes()
