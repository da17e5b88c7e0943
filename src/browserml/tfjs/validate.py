"""Reading TF.js models made elsewhere (layers or graph), and refusing broken ones precisely.

Checks, each failure naming the file and the reason: the JSON parses and is a TF.js model; every
weight has a known dtype and a valid shape; every shard is present; each group's shards hold
exactly ``sum(product(shape) x stored dtype size)`` bytes, quantized sizes included. A short shard
is named: converters write equal shards but the last, so the first shard of a different size (or
the last) is the truncated one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import FormatError
from .layers_model import read_model_json
from .weights import stored_bytes


@dataclass
class TfjsModel:
    """A validated TF.js model on disk."""

    path: Path
    document: dict
    kind: str  # "layers-model" | "graph-model"
    shards: list[Path]

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def weight_specs(self) -> list[dict]:
        return [spec for group in self.document["weightsManifest"] for spec in group["weights"]]


def model_kind(document: dict, path: Path) -> str:
    """Given a parsed model.json, return 'layers-model' or 'graph-model' (from ``format`` or,
    for older files without it, from the topology's shape)."""
    declared = document.get("format")
    if declared in ("layers-model", "graph-model"):
        return declared
    topology = document["modelTopology"]
    if isinstance(topology, dict) and ("model_config" in topology or "class_name" in topology):
        return "layers-model"
    if isinstance(topology, dict) and "node" in topology:
        return "graph-model"
    raise FormatError(f"{path}: cannot tell a layers model from a graph model (no 'format')")


def check_group(model_json: Path, group: dict) -> list[Path]:
    """Check one weights group's shards against its specs; return the shard paths."""
    folder = model_json.parent
    expected = 0
    for spec in group["weights"]:
        if not isinstance(spec, dict) or "name" not in spec or "shape" not in spec:
            raise FormatError(f"{model_json}: weight entry without name/shape: {spec!r}")
        try:
            expected += stored_bytes(spec)
        except FormatError as exc:
            raise FormatError(f"{model_json}: {exc}") from None
    shards = []
    for name in group["paths"]:
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            raise FormatError(f"{model_json}: weight path {name!r} is not a plain file name")
        shard = folder / name
        if not shard.is_file():
            raise FormatError(f"{shard}: weight shard missing")
        shards.append(shard)
    sizes = [shard.stat().st_size for shard in shards]
    total = sum(sizes)
    if total != expected and not shards:
        raise FormatError(f"{model_json}: a weights group lists no shard files, its weights need "
                          f"{expected} bytes")
    if total != expected:
        culprit = odd_shard(shards, sizes, short=total < expected)
        reason = "truncated" if total < expected else "longer than the weights need"
        raise FormatError(
            f"{culprit}: {reason}: the group's shards hold {total} bytes, "
            f"its {len(group['weights'])} weights' shapes and dtypes need {expected}"
        )
    return shards


def odd_shard(shards: list[Path], sizes: list[int], short: bool) -> Path:
    """Return the shard most likely at fault when a group's bytes are short (or long): all shards
    but the last have the converter's shard size, so the first other one that is smaller (larger)
    than its siblings is the culprit, else the last."""
    if len(shards) > 1:
        nominal = max(sizes) if short else min(sizes[:-1])
        for shard, size in zip(shards[:-1], sizes[:-1], strict=True):
            if (size < nominal) if short else (size > nominal):
                return shard
    return shards[-1]


def load_tfjs_model(model_json: Path) -> TfjsModel:
    """Given a ``model.json`` path (or its folder), return the validated model or raise
    FormatError naming the exact file and reason."""
    model_json = Path(model_json)
    if model_json.is_dir():
        model_json = model_json / "model.json"
    document = read_model_json(model_json)
    kind = model_kind(document, model_json)
    shards = [shard for group in document["weightsManifest"]
              for shard in check_group(model_json, group)]
    return TfjsModel(model_json, document, kind, shards)
