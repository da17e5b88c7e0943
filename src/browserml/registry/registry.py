"""The registry: publish builds as immutable versions, point channels at them, answer manifests.

Why it is shaped this way: the reference team once shipped corrupted quantized files and only
survived thanks to the client's fall back. So a publish checks *everything it can* before anything
is written — every file's size and sha256 against ``variants.json``, every TF.js ``model.json``'s
weight shapes against its shards' bytes, every TFLite file's flatbuffer magic — and then commits in
the only order that cannot leave a half version: blobs first (content-addressed, each written
atomically, harmless if orphaned), then one database transaction. A publish killed at any point
leaves no version row, so no manifest can ever name a missing or partial file.

Channels make rollouts and rollbacks a one-row change. A channel can serve a new version to a
percentage of clients; which clients is decided by a hash of (model, channel, client id), so a
client stays in the canary as its percentage grows, and a client without an id gets the version
everyone else has.

This module knows no HTTP: the server turns manifests into responses and adds the blob URLs.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import FormatError, InvalidNameError, InvalidValueError, NotFoundError
from ..settings import Settings, get_settings
from ..tfjs.weights import stored_bytes
from ..variants import Build, Variant, check_files, read_build
from .blobs import BlobStore
from .db import ChannelState, Database, open_database
from .gc import Garbage, collect, publishing

NAME = re.compile(r"[a-z0-9-]{1,64}")
DEFAULT_CHANNEL = "stable"
# The order the SDK should try variants in: smallest download first, exact float32 last.
PREFERENCE = {"uint8": 0, "float16": 1, "float32": 2}
TFLITE_MAGIC = b"TFL3"


def check_name(value: str, what: str = "model name") -> str:
    """Given a model or channel name, return it when it is ``[a-z0-9-]{1,64}``, else raise
    InvalidNameError (this is also what keeps names from ever being paths)."""
    if not isinstance(value, str) or NAME.fullmatch(value) is None:
        raise InvalidNameError(f"{what} {str(value)[:80]!r} is not [a-z0-9-]{{1,64}}")
    return value


@dataclass(frozen=True)
class Published:
    """What a publish stored: the version number, the channel it went to, and its size."""

    name: str
    version: int
    channel: str | None
    variants: list[str]
    files: int
    bytes: int


class Registry:
    """Blob store + metadata database under one data dir (or a PostgreSQL URL)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.blobs = BlobStore(Path(self.settings.data_dir) / "blobs")
        self.db: Database = open_database(self.settings)

    def close(self) -> None:
        """Release database connections."""
        self.db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------------------

    def publish(
        self,
        build_dir: Path,
        name: str,
        version: int | None = None,
        channel: str | None = None,
        accuracy_budget_pp: float | None = None,
    ) -> Published:
        """Given a build dir, validate every file, store the blobs, then record the version (and
        point ``channel`` at it) in one transaction. Return what was published.

        A model's first version published without a channel goes on ``stable`` (DEFAULT_CHANNEL),
        so the SDK finds it at once; ``Published.channel`` says so. Later versions leave every
        channel alone unless ``channel`` is given.

        Raises FormatError/IntegrityError naming the first bad file, with nothing recorded."""
        check_name(name)
        if channel is not None:
            check_name(channel, "channel")
        if version is not None and version < 1:
            raise InvalidValueError(f"version must be a positive integer, got {version}")
        build_dir = Path(build_dir)
        build = read_build(build_dir)
        validate_build(build_dir, build)
        budget = (
            self.settings.accuracy_budget_pp if accuracy_budget_pp is None else accuracy_budget_pp
        )
        release = {
            "build": build.model_dump(by_alias=True),
            "manifest": _manifest_body(build, budget),
        }
        with publishing(self.blobs):  # gc waits: these blobs are referenced once we commit
            for variant in build.variants:
                for entry in variant.files:
                    self.blobs.put_file(build_dir / entry.path, entry.sha256)
            number, channel = self.db.insert_version(name, version, json.dumps(release), channel,
                                                     first_channel=DEFAULT_CHANNEL)
        files = [entry for variant in build.variants for entry in variant.files]
        return Published(
            name=name,
            version=number,
            channel=channel,
            variants=[v.name for v in build.variants],
            files=len(files),
            bytes=sum(entry.bytes for entry in files),
        )

    def promote(self, name: str, version: int, channel: str, percent: int = 100) -> ChannelState:
        """Point ``channel`` at ``version`` for ``percent`` % of clients; return the state."""
        check_name(name)
        check_name(channel, "channel")
        if not 1 <= percent <= 100:
            raise InvalidValueError(f"percent must be between 1 and 100, got {percent}")
        return self.db.set_channel(name, channel, version, percent)

    def rollback(self, name: str, channel: str) -> ChannelState:
        """Undo the last promotion of ``channel``; return the state it is back to."""
        check_name(name)
        check_name(channel, "channel")
        self._require_model(name)
        return self.db.rollback_channel(name, channel)

    def delete(self, name: str, version: int) -> None:
        """Delete a version that no channel serves (its blobs stay: others may share them)."""
        check_name(name)
        self.db.delete_version(name, version)

    def gc(self, delete: bool = False) -> Garbage:
        """Find (and with ``delete``, remove) blobs no version references and abandoned temp
        and upload leftovers; in-flight publishes are waited for (:mod:`.gc`)."""
        return collect(self.blobs, self.db, Path(self.settings.data_dir), delete)

    # -- reads ------------------------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Return every model with its versions and channel states, for ``browserml list``."""
        models: dict[str, dict[str, Any]] = {}
        for row in self.db.list_versions():
            release = json.loads(row.build)
            variants = release["manifest"]["variants"]
            entry = models.setdefault(
                row.model, {"name": row.model, "versions": [], "channels": {}}
            )
            entry["versions"].append(
                {
                    "version": row.version,
                    "created_at": row.created_at,
                    "variants": [v["name"] for v in variants],
                    "bytes": sum(v["bytes"] for v in variants),
                }
            )
        for name, entry in models.items():
            for state in self.db.channels(name):
                entry["channels"][state.channel] = _state_dict(state)
        return list(models.values())

    def manifest(
        self, name: str, channel: str = DEFAULT_CHANNEL, client_id: str | None = None
    ) -> dict[str, Any]:
        """Given a model, channel and optional client id, return the manifest that client should
        load: the version (the canary's when the client hashes into its percentage), labels,
        input, preprocessing, offered variants in preference order, and what is not offered.

        Raises NotFoundError for an unknown model or channel."""
        state = self._channel_state(name, channel)
        version = pick_version(state, name, client_id)
        return self.version_manifest(name, version, channel)

    def _channel_state(self, name: str, channel: str):
        """The channel's state; NotFoundError naming what is missing (model or channel)."""
        check_name(name)
        check_name(channel, "channel")
        state = self.db.channel(name, channel)
        if state is None:
            self._require_model(name)
            raise NotFoundError(f"model {name!r} has no channel {channel!r}")
        return state

    def channel_document(self, name: str, channel: str = DEFAULT_CHANNEL) -> dict[str, Any]:
        """Given a model and channel, return what *every* client of the channel may read — the
        static form of :meth:`manifest`, fit for a CDN: the manifest of the version clients without
        a canary bucket get, plus, during a canary, ``rollout = {version, percent, manifest}``.
        The SDK applies the split itself with :func:`pick_version`'s hash, so a client lands on
        the same version whether a server or a static file answered.

        Raises NotFoundError for an unknown model or channel."""
        state = self._channel_state(name, channel)
        document = self.version_manifest(name, pick_version(state, name, None), channel)
        if state.percent < 100 and state.base_version is not None:
            document["rollout"] = {
                "version": state.version,
                "percent": state.percent,
                "manifest": self.version_manifest(name, state.version, channel),
            }
        return document

    def version_manifest(self, name: str, version: int, channel: str | None = None) -> dict:
        """Given a model and version, return its manifest (without blob URLs)."""
        row = self.db.get_version(check_name(name), version)
        body = json.loads(row.build)["manifest"]
        return {"name": name, "version": version, "channel": channel, **body}

    def known_versions(self) -> dict[str, dict[int, frozenset[str]]]:
        """Return ``{model: {version: variant names}}`` for every published version: what
        telemetry may be about (:class:`browserml.telemetry.scope.Scope`)."""
        known: dict[str, dict[int, frozenset[str]]] = {}
        for row in self.db.list_versions():
            manifest = json.loads(row.build)["manifest"]
            names = [v["name"] for v in manifest["variants"]] + [v["name"] for v in manifest["not_offered"]]
            known.setdefault(row.model, {})[row.version] = frozenset(names)
        return known

    def _require_model(self, name: str) -> None:
        if not self.db.list_versions(name):
            raise NotFoundError(f"no model named {name!r}; publish one with 'browserml publish'")


def pick_version(state: ChannelState, name: str, client_id: str | None) -> int:
    """Given a channel state, return the version this client gets: the rollout's version when the
    client's stable hash bucket (0-99) is below the percentage, else the base version."""
    if state.percent >= 100 or state.base_version is None:
        return state.version
    if not client_id:
        return state.base_version
    in_rollout = canary_bucket(name, state.channel, client_id) < state.percent
    return state.version if in_rollout else state.base_version


def canary_bucket(name: str, channel: str, client_id: str) -> int:
    """Given a model, channel and client id, return the client's bucket 0-99: the first 8 bytes
    of sha256("name\\nchannel\\nclient") big-endian, mod 100. The SDK's ``canary.js`` computes the
    same with SubtleCrypto for static manifests, so every server and every CDN agree."""
    digest = hashlib.sha256(f"{name}\n{channel}\n{client_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def _state_dict(state: ChannelState) -> dict[str, Any]:
    data = asdict(state)
    data.pop("channel")
    return data


# -- validation ------------------------------------------------------------------------------------


def validate_build(build_dir: Path, build: Build) -> None:
    """Raise FormatError/IntegrityError for the first thing wrong with a build: unsafe paths,
    files not matching ``variants.json``, weights not matching their shapes, bad TFLite files."""
    for variant in build.variants:
        for entry in variant.files:
            check_relative_path(entry.path, f"variant {variant.name}")
    check_files(build_dir, build)
    check_runtime_checks(build)
    for variant in build.variants:
        _variant_dir(variant)
        if variant.format == "tflite":
            _check_tflite(build_dir, variant)
        else:
            _check_tfjs(build_dir, variant)


def check_runtime_checks(build: Build) -> None:
    """Refuse a converted build (from ``browserml train`` or a Keras model) with an offered
    variant that was never loaded and compared in its own runtime (TF.js / LiteRT.js): its
    figures would be Keras' hopes, not what browsers compute. Imported TF.js models are checked
    by ``import``'s validation instead."""
    if build.source.startswith("import:"):
        return
    for variant in build.variants:
        if not variant.offered:
            continue
        if variant.check is None:
            raise FormatError(f"variant {variant.name} was never loaded and checked in its "
                              "runtime; convert the model again with 'browserml convert', which "
                              "checks every variant in TF.js / LiteRT.js")
        if not variant.check.passed:
            raise FormatError(f"variant {variant.name} is offered but failed its runtime check "
                              f"({variant.check.error or 'differs from Keras'}); convert again")


def check_relative_path(path: str, where: str) -> PurePosixPath:
    """Given a path from a manifest, return it when it stays inside its folder, else raise."""
    pure = PurePosixPath(path)
    if not path or "\\" in path or pure.is_absolute() or ".." in pure.parts or "." in pure.parts:
        raise FormatError(f"{path!r} ({where}): paths must be relative and stay inside the build")
    return pure


def _variant_dir(variant: Variant) -> PurePosixPath:
    """The folder of a variant's single model file; every other file must sit under it."""
    models = [PurePosixPath(e.path) for e in variant.files if e.role == "model"]
    if len(models) != 1:
        raise FormatError(f"variant {variant.name}: needs exactly one file with role 'model'")
    folder = models[0].parent
    for entry in variant.files:
        if not PurePosixPath(entry.path).is_relative_to(folder):
            raise FormatError(f"{entry.path}: outside variant {variant.name}'s folder {folder}/")
    return folder


def _check_tflite(build_dir: Path, variant: Variant) -> None:
    for entry in variant.files:
        with (build_dir / entry.path).open("rb") as handle:
            head = handle.read(8)
        if entry.role == "model" and head[4:8] != TFLITE_MAGIC:
            raise FormatError(f"{entry.path}: not a TFLite flatbuffer (no 'TFL3' at bytes 4-8)")


def _check_tfjs(build_dir: Path, variant: Variant) -> None:
    """Check a TF.js model.json: valid JSON, a weightsManifest whose shards are all listed in
    ``variants.json``, and whose weights' shapes x dtype sizes add up to the shards' bytes."""
    model_entry = next(e for e in variant.files if e.role == "model")
    model_path = build_dir / model_entry.path
    try:
        model = json.loads(model_path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{model_entry.path}: not valid JSON ({exc})") from None
    groups = model.get("weightsManifest") if isinstance(model, dict) else None
    if not isinstance(groups, list):
        raise FormatError(f"{model_entry.path}: no 'weightsManifest' list")
    folder = PurePosixPath(model_entry.path).parent
    sizes = {PurePosixPath(e.path): e.bytes for e in variant.files if e.role == "weights"}
    hashes = {PurePosixPath(e.path): e.sha256 for e in variant.files if e.role == "weights"}
    for index, group in enumerate(groups):
        where = f"{model_entry.path} weightsManifest[{index}]"
        shard_bytes = _group_shard_bytes(group, folder, sizes, where)
        _check_group_hashes(group, folder, hashes, where)
        weight_bytes = sum(_weight_bytes(w, where) for w in group.get("weights", []))
        if weight_bytes != shard_bytes:
            raise FormatError(
                f"{where}: weight shapes need {weight_bytes} bytes but its shards hold "
                f"{shard_bytes}; the shards do not belong to this model.json"
            )


def _group_shard_bytes(
    group: dict, folder: PurePosixPath, sizes: dict[PurePosixPath, int], where: str
) -> int:
    paths = group.get("paths") if isinstance(group, dict) else None
    if not isinstance(paths, list) or not paths:
        raise FormatError(f"{where}: no 'paths' list")
    total = 0
    for path in paths:
        full = folder / check_relative_path(str(path), where)
        if full not in sizes:
            raise FormatError(f"{where}: shard {path!r} is not listed in variants.json")
        total += sizes[full]
    return total


def _check_group_hashes(group: dict, folder: PurePosixPath, hashes: dict[PurePosixPath, str],
                        where: str) -> None:
    """When a group records its shards' sha256 (our writer does), they must be the files
    ``variants.json`` lists: the SDK refuses a variant whose model.json disagrees."""
    recorded = group.get("sha256")
    if recorded is None:
        return
    if not isinstance(recorded, list) or len(recorded) != len(group["paths"]):
        raise FormatError(f"{where}: 'sha256' must list one digest per path")
    for path, digest in zip(group["paths"], recorded, strict=True):
        if hashes.get(folder / str(path)) != digest:
            raise FormatError(f"{where}: shard {path!r} is not the file model.json vouches for "
                              "(sha256 differs); rebuild the variant")


def _weight_bytes(weight: dict, where: str) -> int:
    """Given one weightsManifest entry, return the bytes it occupies in the shards (TF.js's
    dtype sizes, quantized dtype first, live in :mod:`browserml.tfjs.weights`)."""
    if not isinstance(weight, dict):
        raise FormatError(f"{where}: a weight entry is not an object")
    try:
        return stored_bytes(weight)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None


# -- manifest --------------------------------------------------------------------------------------


def _manifest_body(build: Build, budget_pp: float) -> dict[str, Any]:
    """Given a validated build, return the version-independent part of its manifest."""
    offered, not_offered = [], []
    reference = build.keras_accuracy
    if reference is None:
        reference = next((v.accuracy for v in build.variants if v.name == "float32"), None)
    for variant in build.variants:
        reason = _not_offered_reason(variant, reference, budget_pp)
        if reason:
            not_offered.append({"name": variant.name, "reason": reason})
        else:
            offered.append(variant)
    offered.sort(key=lambda v: (v.engine != "tfjs", PREFERENCE.get(v.name, len(PREFERENCE))))
    return {
        "labels": build.labels,
        "input": build.input.model_dump(),
        "preprocessing": {
            "resize": "bilinear",
            "channels": build.input.channels,
            "rescale": "in-model",
        },
        "variants": [_variant_entry(v) for v in offered],
        "not_offered": not_offered,
        "engine_notes": build.engine_notes,
    }


def _not_offered_reason(variant: Variant, reference: float | None, budget_pp: float) -> str | None:
    if not variant.offered:
        return variant.note or "marked not offered by the build"
    if reference is None or variant.accuracy is None:
        return None
    loss_pp = (reference - variant.accuracy) * 100
    if loss_pp > budget_pp:
        return f"accuracy loss {loss_pp:.1f} pp exceeds the {budget_pp:g} pp budget"
    return None


def _variant_entry(variant: Variant) -> dict[str, Any]:
    folder = _variant_dir(variant)
    return {
        "name": variant.name,
        "engine": variant.engine,
        "format": variant.format,
        "weight_dtype": variant.weight_dtype,
        "bytes": variant.bytes,
        "accuracy": variant.accuracy,
        "agreement": variant.agreement,
        "files": [
            {
                "path": PurePosixPath(e.path).relative_to(folder).as_posix(),
                "role": e.role,
                "bytes": e.bytes,
                "sha256": e.sha256,
            }
            for e in variant.files
        ],
    }
