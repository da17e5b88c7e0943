"""One telemetry request body on its way to the store: validated, folded into per-minute rollup
deltas and encoded as the JSON array that is stored — the CPU side of ingest.

Why its own module: this is everything ingest does in Python per event (pydantic validation
~0.8 ms, the fold ~0.5 ms and the encode ~0.25 ms per 500-event batch, measured), and it is a pure
function of the body. The server can therefore run it in validator *processes*
(``settings.telemetry_validators``) instead of its event loop: one Python process is bound by its
GIL at ~190k events/s, well before the database or the second core is busy. Only
:class:`Received` crosses the process boundary — counts, reasons, one JSON string and a handful of
rollup rows, never 500 event dicts — so handing it back costs a fraction of producing it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .schema import Event, encode_events, validate_batch
from .scope import Scope, relabel, screen_events
from .stats import fold, merge_into


@dataclass(frozen=True)
class Prepared:
    """One batch ready to store: its raw row (arrival time, event count, events as JSON), its
    per-minute rollup deltas (:func:`.stats.fold`) and its idempotency key, if the client sent one."""

    received_ms: int
    n: int
    events_json: str
    minutes: dict[tuple, list]
    client: str = ""  # who sent it (client id, or the address's hash): see TelemetryStore.clients
    source: str = ""  # the sender's address, hashed
    key: str | None = None  # the client's idempotency key (``?batch=``): stored at most once


@dataclass(frozen=True)
class Received:
    """What the server needs from one request body: the batch to store (None when no event
    passed) and the dropped events' count and reasons (the first few)."""

    batch: Prepared | None
    dropped: int
    errors: list[dict[str, Any]]
    unknown: dict[str, int] = field(default_factory=dict)


def receive(body: bytes, max_events: int, received_ms: int, scope: Scope | None = None) -> Received:
    """Given a request body, the event limit, the server's arrival time and (when given) the
    registry's :class:`.scope.Scope`, return what to store and what was dropped: invalid events
    in ``dropped``/``errors``, events about unknown models or versions in ``unknown`` (by model).
    Raises what :func:`.schema.validate_batch` raises for a body that is refused as a whole (not
    a JSON array, too many events)."""
    checked = validate_batch(body, max_events)
    events, unknown = checked.events, {}
    if not events:
        return Received(None, checked.dropped, checked.errors)
    minutes = fold(events, received_ms)
    if scope is not None:
        # Known models and versions are decided on the fold's few keys; only a batch that has
        # unknown ones is filtered event by event (and folded again).
        if not all(scope.allows({"model": k[0], "version": k[3]}) for k in minutes):  # type: ignore[typeddict-item]
            screened = screen_events(events, scope)
            events, unknown = screened.events, screened.unknown
            minutes = fold(events, received_ms)
        minutes = relabel(minutes, scope, merge_into)
    batch = Prepared(received_ms, len(events), encode_events(events), minutes) if events else None
    return Received(batch, checked.dropped, checked.errors, unknown)


def prepare(events: list[Event], received_ms: int) -> Prepared:
    """Given validated events and their arrival time, return them folded and encoded."""
    return Prepared(received_ms, len(events), encode_events(events), fold(events, received_ms))


def exit_with_parent(parent_pid: int, every_s: float = 1.0) -> None:
    """Validator-process initializer: exit once ``parent_pid`` is gone (the server was killed,
    even with SIGKILL, which gives it no chance to stop its pool), so no validator outlives it."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
