"""Telemetry from browsers: the wire schema (:mod:`.schema`), durable storage with rollups
(:mod:`.store`) and the statistics read from them (:mod:`.stats`). Knows no HTTP: the server's
``telemetry`` and ``stats`` modules call in here."""

from __future__ import annotations

from .schema import Event, Validated, validate_batch
from .store import TelemetryStore, open_store

__all__ = ["Event", "TelemetryStore", "Validated", "open_store", "validate_batch"]
