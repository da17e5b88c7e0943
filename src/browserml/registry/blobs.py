"""A content-addressed blob store on the local disk.

Every published file is stored once under its sha256 (``blobs/ab/cd/abcd…``), so two versions that
share a shard share the bytes, a blob's URL never changes meaning (which is what makes
``Cache-Control: immutable`` honest) and integrity is checked by recomputing one hash.

Writes are atomic: bytes go to a temp file in the same file system, are hashed while copied,
fsync'd, then renamed into place (and the directory fsync'd), so a crash leaves either no blob or a
whole one — never a truncated file under a valid name. Orphans from a crashed publish are harmless
(nothing refers to them) and reclaimed: temp files at the next start, blobs by ``browserml gc``
(:mod:`.gc`).

Next to a blob, smaller precompressed copies (``<sha>.br``, ``<sha>.gz``) are kept when compression
actually shrinks it, so the server can answer ``Accept-Encoding`` without compressing per request.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import brotli

from ..errors import IntegrityError, NotFoundError

SHA256 = re.compile(r"[0-9a-f]{64}")
ENCODINGS = ("br", "gzip")
_SUFFIX = {"br": ".br", "gzip": ".gz"}
_CHUNK = 1 << 20
# Brotli's best level is slow on multi-megabyte shards; weights compress about as well at 9.
_BROTLI_SMALL_QUALITY, _BROTLI_LARGE_QUALITY, _BROTLI_SMALL_LIMIT = 11, 9, 1 << 20


def is_sha256(value: str) -> bool:
    """Given a string, return True when it is a lowercase hex sha256 (so it is safe as a path)."""
    return SHA256.fullmatch(value) is not None


class BlobStore:
    """Files named by their sha256 under ``root``, sharded two levels deep to keep folders small."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(exist_ok=True)

    def path(self, sha256: str, encoding: str | None = None) -> Path:
        """Given a sha256 (and optionally ``br``/``gzip``), return where that blob lives.

        Raises NotFoundError for anything that is not a sha256, so a caller can never be steered
        outside the store by a crafted name."""
        if not is_sha256(sha256):
            raise NotFoundError(f"{sha256[:80]!r} is not a sha256")
        name = sha256 + (_SUFFIX[encoding] if encoding else "")
        return self.root / sha256[:2] / sha256[2:4] / name

    def exists(self, sha256: str) -> bool:
        """Given a sha256, return True when the blob is stored."""
        return self.path(sha256).is_file()

    def put_file(self, source: Path, sha256: str) -> Path:
        """Store ``source`` under ``sha256``; return the blob path.

        The hash is recomputed while copying: a file that changed since it was checked raises
        IntegrityError and stores nothing. A blob already present is left as it is."""
        target = self.path(sha256)
        if target.is_file():
            return target
        with _AtomicWrite(self._tmp, target) as (handle, digest):
            with Path(source).open("rb") as src:
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    digest.update(chunk)
                    handle.write(chunk)
            if digest.hexdigest() != sha256:
                raise IntegrityError(
                    f"{source}: changed while publishing (sha256 {digest.hexdigest()[:12]}…, "
                    f"expected {sha256[:12]}…); rebuild and publish again"
                )
        self._precompress(target, sha256)
        return target

    def _precompress(self, blob: Path, sha256: str) -> None:
        """Keep ``.br``/``.gz`` copies of ``blob`` only where they are smaller than the blob."""
        data = blob.read_bytes()
        quality = (
            _BROTLI_SMALL_QUALITY if len(data) <= _BROTLI_SMALL_LIMIT else _BROTLI_LARGE_QUALITY
        )
        candidates = {
            "br": brotli.compress(data, quality=quality),
            "gzip": gzip.compress(data, compresslevel=9, mtime=0),
        }
        for encoding, packed in candidates.items():
            if len(packed) < len(data):
                with _AtomicWrite(self._tmp, self.path(sha256, encoding)) as (handle, _):
                    handle.write(packed)

    def recompress(self, sha256: str) -> None:
        """Recreate the ``.br``/``.gz`` copies of a stored blob (one was deleted)."""
        self._precompress(self.path(sha256), sha256)

    def encodings(self, sha256: str) -> dict[str, Path]:
        """Given a sha256, return the precompressed copies that exist, by content-coding name."""
        found = {}
        for encoding in ENCODINGS:
            path = self.path(sha256, encoding)
            if path.is_file():
                found[encoding] = path
        return found


class _AtomicWrite:
    """Context manager: yield (file, sha256 digest) for a temp file; on success fsync and rename
    it to ``target`` and fsync the folder; on any error delete the temp file."""

    def __init__(self, tmp_dir: Path, target: Path) -> None:
        self.tmp_dir, self.target = tmp_dir, target

    def __enter__(self):
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix=".blob-")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "being written": see registry/gc.py
        self.tmp = Path(name)
        self.handle = os.fdopen(fd, "wb")
        return self.handle, hashlib.sha256()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
        finally:
            self.handle.close()
        if exc_type is not None:
            self.tmp.unlink(missing_ok=True)
            return
        self.target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.tmp, 0o644)
        os.replace(self.tmp, self.target)
        _fsync_dir(self.target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: fsync the folder that holds the new name."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def iter_blobs(store: BlobStore) -> Iterator[str]:
    """Yield the sha256 of every stored blob (not its compressed copies)."""
    for path in store.root.glob("??/??/*"):
        if is_sha256(path.name):
            yield path.name
