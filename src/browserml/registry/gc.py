"""Disk left behind by crashed publishes: temp files and uploads removed at start, unreferenced
blobs collected on request (``browserml gc``, a dry run unless ``--delete``).

Why: a publish writes its blobs before its database row (so no manifest can name a missing file),
which means a publish killed half-way leaves blobs nothing refers to, and a killed upload leaves
its parts under ``uploads/`` (8 killed uploads left 2.2 GiB, issue 17).

How it stays safe without guessing from file ages:

* every temp file (``blobs/tmp/.blob-*``) and upload folder (``uploads/<name>-*``) is held under an
  exclusive ``flock`` by the process writing it; the kernel drops the lock when that process
  dies, even by SIGKILL. :func:`clean_leftovers` removes only what it can lock itself, i.e. what
  nobody is writing any more;
* every publish holds a *shared* lock on ``blobs/.publish.lock`` from its first blob to its
  commit (:func:`publishing`); :func:`collect` takes it *exclusively*, so it waits for in-flight
  publishes and none starts while it decides. A blob is garbage only when no version's build
  lists it, read after the lock is held.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .blobs import BlobStore, iter_blobs
from .db import Database

PUBLISH_LOCK = ".publish.lock"


@contextmanager
def _flocked(path: Path, mode: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


@contextmanager
def publishing(store: BlobStore) -> Iterator[None]:
    """Hold while a publish writes blobs and records its version: :func:`collect` waits."""
    with _flocked(store.root / PUBLISH_LOCK, fcntl.LOCK_SH):
        yield


def hold(fd: int) -> None:
    """Mark an open temp file or folder (by descriptor) as being written by this process."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _abandoned(path: Path) -> bool:
    """True when nobody holds ``path`` (its writer finished or died)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _leftover_candidates(data_dir: Path) -> list[Path]:
    return [*(data_dir / "blobs" / "tmp").glob("*"), *(data_dir / "uploads").glob("*")]


def clean_leftovers(data_dir: Path) -> tuple[int, int]:
    """Remove abandoned temp files and upload folders under ``data_dir``; return (entries,
    bytes) removed. Safe while other servers or publishes run: held entries are skipped."""
    removed = freed = 0
    for path in _leftover_candidates(Path(data_dir)):
        if not _abandoned(path):
            continue
        try:
            size = _size(path)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        removed, freed = removed + 1, freed + size
    return removed, freed


@dataclass
class Garbage:
    """Unreferenced blobs found (and deleted, when asked) by :func:`collect`."""

    blobs: list[str] = field(default_factory=list)
    bytes: int = 0
    leftovers: int = 0
    leftover_bytes: int = 0
    deleted: bool = False


def referenced(db: Database) -> set[str]:
    """Every sha256 some published version's build lists (offered or not)."""
    shas = set()
    for row in db.list_versions():
        for variant in json.loads(row.build)["build"]["variants"]:
            shas.update(entry["sha256"] for entry in variant["files"])
    return shas


def collect(store: BlobStore, db: Database, data_dir: Path, delete: bool = False) -> Garbage:
    """Find the blobs no version references (with their ``.br``/``.gz`` copies) and, when
    ``delete``, remove them and the abandoned leftovers; in-flight publishes are waited for."""
    garbage = Garbage(deleted=delete)
    with _flocked(store.root / PUBLISH_LOCK, fcntl.LOCK_EX):
        keep = referenced(db)
        for sha256 in sorted(set(iter_blobs(store)) - keep):
            files = [store.path(sha256), *store.encodings(sha256).values()]
            garbage.blobs.append(sha256)
            for path in files:
                try:
                    garbage.bytes += path.stat().st_size
                    if delete:
                        path.unlink()
                except FileNotFoundError:
                    continue
        if delete:
            garbage.leftovers, garbage.leftover_bytes = clean_leftovers(data_dir)
        else:
            for path in _leftover_candidates(Path(data_dir)):
                if _abandoned(path):
                    garbage.leftovers += 1
                    garbage.leftover_bytes += _size(path)
    return garbage
