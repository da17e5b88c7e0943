"""What telemetry may be *about*: the models and versions the registry knows, and a bounded set of
label values, so that anonymous input cannot create models, versions or label values.

Why: ``POST /v1/telemetry`` is open to every browser, hence to anyone. Before this (issue 17) one
POST could invent 10,000 models (the dashboard then opened on one of them) and any string of the
label alphabet became its own rollup row. Now:

* an event whose model is not in the registry, or whose version is neither 0 ("not known yet":
  ``init`` comes before the manifest) nor a published version of that model, is **dropped and
  counted** (:attr:`Screened.unknown`, per model; one ``(unknown)`` counter for all unknown names,
  so the counters themselves stay bounded);
* in the **rollups** (what stats, the dashboard and any decision read), a label outside its known
  set becomes ``other``: ``engine`` and ``backend`` from the SDK's own lists, ``variant`` from the
  version's published variants, ``device`` from the SDK's coarse class pattern. The raw event keeps
  what was sent (bounded by the schema) for audits.

Screening runs after the fold (:func:`.stats.fold`) on the handful of rollup keys a batch makes,
so a batch of well-formed events costs a few dict lookups; only a batch with unknown models or
versions pays for filtering its events one by one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .schema import Event

OTHER = "other"
UNKNOWN_MODEL = "(unknown)"
ENGINES = frozenset({"", "tfjs", "litert"})
BACKENDS = frozenset({"", "webgpu", "webgl", "wasm", "cpu"})
# sdk/src/device.js deviceClass(): form factor, core bucket, memory bucket, cross-origin isolation.
DEVICE = re.compile(r"(desktop|mobile)-(1|2|4|8|16)c(-(1|2|4|8)g)?(-coi)?")


@dataclass(frozen=True)
class Scope:
    """The registry's models: ``{model: {version: variant names}}`` (a plain mapping, so it
    pickles cheaply into validator processes)."""

    models: Mapping[str, Mapping[int, frozenset[str]]] = field(default_factory=dict)

    def allows(self, event: Event) -> bool:
        """Given a validated event, return True when its model and version are known."""
        versions = self.models.get(event["model"])
        if versions is None:
            return False
        version = event.get("version", 0)
        return version == 0 or version in versions

    def variants(self, model: str, version: int) -> frozenset[str]:
        """The variant names a (model, version) may report; for version 0, those of any version."""
        versions = self.models.get(model, {})
        if version:
            return versions.get(version, frozenset())
        return frozenset().union(*versions.values()) if versions else frozenset()

    def label_key(self, key: tuple) -> tuple:
        """Given a minute rollup key (model, span, start, version, variant, engine, backend,
        device), return it with every unknown label replaced by ``other``."""
        model, span, start, version, variant, engine, backend, device = key
        if variant and variant not in self.variants(model, version):
            variant = OTHER
        if engine not in ENGINES:
            engine = OTHER
        if backend not in BACKENDS:
            backend = OTHER
        if device and DEVICE.fullmatch(device) is None:
            device = OTHER
        return (model, span, start, version, variant, engine, backend, device)

    def counter_label(self, model: str) -> str:
        """The metrics label for a dropped event's model: itself when known, else one bucket."""
        return model if model in self.models else UNKNOWN_MODEL


@dataclass
class Screened:
    """A batch after screening: the events to keep, and how many were dropped per model label."""

    events: list[Event]
    unknown: dict[str, int] = field(default_factory=dict)


def screen_events(events: list[Event], scope: Scope) -> Screened:
    """Given validated events, return those about known models and versions, and the dropped
    ones counted by :meth:`Scope.counter_label`."""
    kept: list[Event] = []
    unknown: dict[str, int] = {}
    for event in events:
        if scope.allows(event):
            kept.append(event)
        else:
            label = scope.counter_label(event["model"])
            unknown[label] = unknown.get(label, 0) + 1
    return Screened(kept, unknown)


def relabel(minutes: dict[tuple, list], scope: Scope,
            merge: Callable[[list, list], None]) -> dict[tuple, list]:
    """Given a fold's minute rollups, return them keyed by :meth:`Scope.label_key` (rows whose
    keys now coincide merged with ``merge(into, values)``). Returns ``minutes`` itself when no
    key changed, which is the common case."""
    relabelled = {key: scope.label_key(key) for key in minutes}
    if all(new == old for old, new in relabelled.items()):
        return minutes
    out: dict[tuple, list] = {}
    for old, new in relabelled.items():
        have = out.get(new)
        if have is None:
            out[new] = minutes[old]
        else:
            merge(have, minutes[old])
    return out
