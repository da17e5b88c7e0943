"""The model registry: content-addressed blobs on disk + version/channel metadata in SQLite or
PostgreSQL. It knows no HTTP; :mod:`browserml.server` serves what it stores."""

from __future__ import annotations

from .blobs import BlobStore
from .db import ChannelState, open_database
from .registry import Published, Registry, canary_bucket, check_name, pick_version

__all__ = [
    "BlobStore",
    "ChannelState",
    "Published",
    "Registry",
    "canary_bucket",
    "check_name",
    "open_database",
    "pick_version",
]
