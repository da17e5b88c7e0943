"""``browserml export``: the registry's public surface as a static tree any CDN or object store serves.

What the SDK reads is only three kinds of file — channel documents, blobs and its own runtime
files — so a static host can answer it exactly as ``browserml serve`` does, and model files never
have to leave a Python process. ``export(settings, out)`` writes::

    OUT/public/v1/models/<model>/channels/<channel>.json   channel documents (canary split inside)
    OUT/public/v1/blobs/<sha256>[.br|.gz]                   content-addressed files + smaller codings
    OUT/public/sdk/...  OUT/public/vendor/<package>/...     the SDK and the runtimes it loads
    OUT/nginx.conf                                          a server block with every header
    OUT/objects.json                                        per-object metadata for an upload

Guarantees:

* **Same bytes as the server.** Channel documents are encoded by the function the server's route
  uses (:func:`browserml.server.models.encode_json`), blobs and their codings are the blob store's
  own files, SDK and vendor files are copied from where the server serves them.
* **Incremental.** A blob already in the tree is not copied again (its name is its hash, so its
  presence proves its content); SDK and vendor files are copied only when size or mtime differ.
* **Atomic for clients.** Every file is written to a temp name in its folder and renamed into
  place, blobs before documents: a client (or a CDN pulling from this tree) never reads a channel
  document that names a blob not there yet, nor a half-written file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import nginx, vendor
from .errors import NotFoundError, RegistryError
from .registry import Registry, check_name
from .registry.blobs import BlobStore
from .server.models import encode_json, with_document_urls
from .settings import Settings

PUBLIC = "public"
NGINX_FILE = "nginx.conf"
OBJECTS_FILE = "objects.json"
_SUFFIX = {"br": ".br", "gzip": ".gz"}


@dataclass
class ExportReport:
    """What one export wrote: documents, new and already-present blobs, copied runtime files."""

    out: Path
    documents: list[str] = field(default_factory=list)
    blobs_new: int = 0
    blobs_kept: int = 0
    bytes_new: int = 0
    runtime_copied: int = 0
    runtime_kept: int = 0


def export(
    settings: Settings,
    out: Path,
    models: Iterable[str] | None = None,
    channels: Iterable[str] | None = None,
    listen: str = "8080",
    server_name: str = "_",
) -> ExportReport:
    """Given settings (registry + SDK + node_modules) and an output folder, write the static tree
    for ``models`` (default: all) and ``channels`` (default: every channel each model has), the
    nginx server block (``listen``, ``server_name``) and the object metadata; return what was
    written. Raises NotFoundError for an unknown model or channel, RegistryError for an output
    folder that cannot be used."""
    out = Path(out)
    public = out / PUBLIC
    try:
        public.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegistryError(f"cannot create {public}: {exc.strerror}; pick a writable --out") from None
    report = ExportReport(out=out)
    with Registry(settings) as registry:
        documents = _documents(registry, models, channels)
        for sha256 in sorted(_blob_hashes(documents.values())):
            _export_blob(registry.blobs, sha256, public, report)
    _copy_tree(Path(settings.sdk_dir), public / "sdk", report)
    _copy_runtimes(Path(settings.node_modules), public / "vendor", report)
    for path, document in documents.items():  # last: every blob they name is in place
        _write_atomic(public / path, encode_json(document))
        report.documents.append(path)
    _write_atomic(out / NGINX_FILE, nginx.static_server_block(
        public.resolve(), settings, listen=listen, server_name=server_name).encode())
    _write_atomic(out / OBJECTS_FILE, json.dumps(object_metadata(public, settings), indent=1).encode())
    return report


def document_path(model: str, channel: str) -> str:
    """The tree path (and URL path, without the leading slash) of a channel document."""
    return f"v1/models/{model}/channels/{channel}.json"


def _documents(registry: Registry, models: Iterable[str] | None,
               channels: Iterable[str] | None) -> dict[str, dict[str, Any]]:
    """Return {tree path: channel document with blob URLs} for the requested models/channels."""
    listed = {m["name"]: m for m in registry.list()}
    names = list(models) if models else sorted(listed)
    if not names:
        raise NotFoundError("the registry has no model to export; publish one with 'browserml publish'")
    documents = {}
    for name in names:
        check_name(name)
        if name not in listed:
            raise NotFoundError(f"no model named {name!r}; 'browserml list' shows what is published")
        wanted = list(channels) if channels else sorted(listed[name]["channels"])
        for channel in wanted:
            document = with_document_urls(registry.channel_document(name, channel))
            documents[document_path(name, channel)] = document
    return documents


def _blob_hashes(documents: Iterable[dict[str, Any]]) -> set[str]:
    """Every blob a set of channel documents names (rollout manifests included)."""
    hashes = set()
    for document in documents:
        manifests = [document, *([document["rollout"]["manifest"]] if "rollout" in document else [])]
        for manifest in manifests:
            for variant in manifest["variants"]:
                hashes.update(entry["sha256"] for entry in variant["files"])
    return hashes


def _export_blob(store: BlobStore, sha256: str, public: Path, report: ExportReport) -> None:
    """Copy one blob and the codings nginx may choose (see :func:`codings`), identity last, so
    the identity file's presence means the blob is complete in the tree."""
    target = public / "v1" / "blobs" / sha256
    if target.is_file():
        report.blobs_kept += 1
        return
    for encoding, path in codings(store, sha256).items():
        _copy_atomic(path, target.with_name(sha256 + _SUFFIX[encoding]))
    _copy_atomic(store.path(sha256), target)
    report.blobs_new += 1
    report.bytes_new += target.stat().st_size


def codings(store: BlobStore, sha256: str) -> dict[str, Path]:
    """The precompressed copies to export: those the store kept (smaller than the blob), minus a
    ``.br`` not smaller than the ``.gz``. nginx cannot compare sizes, so it prefers ``br`` when
    the browser accepts both; dropping a larger ``br`` makes it send the ``gzip`` copy the server's
    smallest-accepted rule picks (every browser that accepts br accepts gzip)."""
    found = store.encodings(sha256)
    if "br" in found and "gzip" in found and found["br"].stat().st_size >= found["gzip"].stat().st_size:
        del found["br"]
    return found


def _copy_tree(source: Path, target: Path, report: ExportReport) -> None:
    """Mirror the files under ``source`` (the SDK) into ``target``; raise NotFoundError when
    ``source`` is missing."""
    if not source.is_dir():
        raise NotFoundError(f"{source} does not exist; set BROWSERML_SDK_DIR to the SDK's src folder")
    for path in sorted(source.rglob("*")):
        if path.is_file():
            _copy_if_changed(path, target / path.relative_to(source), report)


def _copy_runtimes(node_modules: Path, target: Path, report: ExportReport) -> None:
    """Copy exactly the runtime files the server's ``/vendor/`` answers
    (:func:`browserml.vendor.runtime_files`, the list the wheel ships) to ``target``; raise
    NotFoundError naming the first missing one."""
    files = vendor.runtime_files()
    gaps = [f.relpath for f in files if not f.source(node_modules).is_file()]
    if gaps:
        raise NotFoundError(f"{node_modules}: {gaps[0]} is missing ({len(gaps)} runtime files); "
                            "run 'make deps' (npm ci)")
    for file in files:
        _copy_if_changed(file.source(node_modules), target / file.relpath, report)


def _copy_if_changed(source: Path, dest: Path, report: ExportReport) -> None:
    """Copy ``source`` to ``dest`` (atomically) unless ``dest`` has its size and mtime."""
    stat = source.stat()
    try:
        have = dest.stat()
        if have.st_size == stat.st_size and have.st_mtime_ns == stat.st_mtime_ns:
            report.runtime_kept += 1
            return
    except FileNotFoundError:
        pass
    _copy_atomic(source, dest)
    report.runtime_copied += 1


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` (bytes and mtime) to a temp file beside ``target``, then rename it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".export-")
    os.close(fd)
    try:
        shutil.copy2(source, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``target``, fsync it, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".export-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def object_metadata(public: Path, settings: Settings) -> dict[str, Any]:
    """Given the public tree, return ``{"objects": {key: {Content-Type, Cache-Control?,
    Content-Encoding?}}, "response_headers": {...}}`` for an object-store upload: the metadata
    each object must carry, and the headers a CDN's response policy must add (object stores
    cannot store COOP/COEP/CORP per object)."""
    objects = {}
    for path in sorted(public.rglob("*")):
        if path.is_file() and not path.name.startswith(".export-"):
            key = path.relative_to(public).as_posix()
            objects[key] = nginx.object_headers(key, settings)
    return {
        "objects": objects,
        "response_headers": nginx.response_policy(),
        "note": "Upload each object under its key with this metadata. Object stores cannot negotiate "
                "Accept-Encoding: the .br/.gz keys are for hosts that can (nginx.conf); clients read "
                "the identity key.",
    }
