"""Rollups and the statistics computed from them: pure Python, no database.

Latency percentiles over millions of events cannot come from sorting raw rows within 200 ms, and
exact percentiles cannot be added up across minutes. So every predict latency is counted in a
**log-bucketed histogram**: bucket 0 holds ``[0, 0.1 ms)``, bucket *i* (1..80) holds
``[0.1 · 2^((i-1)/4), 0.1 · 2^(i/4))`` ms — four buckets per doubling, ~19 % wide — and bucket 81
everything from ~105 s up. Histograms add element-wise, so a minute, an hour or a month of them is
summed by the database like any counter, and a percentile is read from the sum: find the bucket
holding the rank, interpolate geometrically inside it. The error is bounded by the bucket width
(≤ ±9 % from the bucket's geometric middle; interpolation usually does much better), which is far
below the device-to-device spread a dashboard shows.

A rollup row holds the counters of one (time bucket, model, version, variant, engine,
backend, device): event counts by type, predictions, latency sums and histogram, load and warm-up
times, memory figures. The ingest path folds each batch into a few of these in Python (a dict
lookup and a few additions per event) and the store upserts them in the batch's own transaction,
so rollups are exact and never lag the raw events.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from .schema import Event

HIST_MIN_MS = 0.1
HIST_PER_OCTAVE = 4
HIST_BUCKETS = 82
HIST_COLUMNS = tuple(f"h{i:02d}" for i in range(HIST_BUCKETS))

# Rollup granularities, in ms: minute rows serve recent windows and time series, hour and day rows
# keep a 30-day query to ~a thousand rows whatever the traffic.
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
SPANS = (MINUTE, HOUR, DAY)

KEY_COLUMNS = ("model", "span", "start", "version", "variant", "engine", "backend", "device")
SUM_COLUMNS = (
    "n_events", "n_init", "n_load", "n_predict", "n_error", "n_fallback", "n_memory",
    "predictions", "predict_ms_sum", "load_n", "load_ms_sum", "warm_n", "warm_ms_sum",
    "mem_n", "mem_bytes_sum",
)  # fmt: skip
MAX_COLUMNS = ("load_ms_max", "warm_ms_max", "mem_bytes_max", "mem_tensors_max", "mem_gpu_max")
VALUE_COLUMNS = SUM_COLUMNS + MAX_COLUMNS + HIST_COLUMNS

_TYPE_SLOT = {"init": 1, "load": 2, "predict": 3, "error": 4, "fallback": 5, "memory": 6}
_LOG2 = math.log2
_N_SUMS = len(SUM_COLUMNS)
_FIRST_HIST = len(SUM_COLUMNS) + len(MAX_COLUMNS)
_LAST_HIST = HIST_BUCKETS - 1

GROUP_BY = ("engine", "backend", "device", "variant", "version")


def bucket_of(ms: float) -> int:
    """Given a latency in ms, return its histogram bucket."""
    if ms < HIST_MIN_MS:
        return 0
    return min(_LAST_HIST, int(_LOG2(ms / HIST_MIN_MS) * HIST_PER_OCTAVE) + 1)


def bucket_bounds(index: int) -> tuple[float, float]:
    """Given a bucket, return its [low, high) bounds in ms (the last one's high is its low × 2)."""
    if index == 0:
        return 0.0, HIST_MIN_MS
    low = HIST_MIN_MS * 2 ** ((index - 1) / HIST_PER_OCTAVE)
    high = HIST_MIN_MS * 2 ** (index / HIST_PER_OCTAVE) if index < _LAST_HIST else low * 2
    return low, high


def percentile(counts: Sequence[float], q: float) -> float | None:
    """Given histogram counts and q in [0, 1], return the estimated q-quantile in ms (None when
    empty): the bucket holding rank q·n, interpolated geometrically (linearly in bucket 0)."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        if count <= 0:
            continue
        if seen + count >= rank:
            fraction = min(1.0, max(0.0, (rank - seen) / count))
            low, high = bucket_bounds(index)
            if index == 0:
                return low + (high - low) * fraction
            return low * (high / low) ** fraction
        seen += count
    return bucket_bounds(len(counts) - 1)[0]


def fold(events: Iterable[Event], received_ms: int) -> dict[tuple, list]:
    """Given validated events (dicts) and the server time they arrived, return {minute key:
    values}: the per-minute rollup deltas of this batch.

    An event happened ``age_ms`` before ``received_ms``; that instant decides its minute. This is
    the per-event hot path of ingest (the only Python that touches every event after validation),
    hence the flat code."""
    minutes: dict[tuple, list] = {}
    width = len(VALUE_COLUMNS)
    for e in events:
        get = e.get
        at = received_ms - int(get("age_ms", 0))
        kind = e["type"]
        key = (e["model"], MINUTE, at - at % MINUTE, get("version", 0), get("variant", ""),
               get("engine", ""), get("backend", ""), get("device", ""))
        v = minutes.get(key)
        if v is None:
            v = minutes[key] = [0] * width
        v[0] += 1
        v[_TYPE_SLOT[kind]] += 1
        ms = get("ms")
        if kind == "predict":
            v[7] += get("batch", 1)
            if ms is not None:
                v[8] += ms
                v[_FIRST_HIST + (0 if ms < HIST_MIN_MS else
                                 min(_LAST_HIST, int(_LOG2(ms / HIST_MIN_MS) * HIST_PER_OCTAVE) + 1))] += 1
        elif kind == "load":
            if ms is not None:
                v[9] += 1
                v[10] += ms
                if ms > v[15]:
                    v[15] = ms
            warmup = get("warmup_ms")
            if warmup is not None:
                v[11] += 1
                v[12] += warmup
                if warmup > v[16]:
                    v[16] = warmup
        num_bytes = get("num_bytes")
        if num_bytes is not None:
            v[13] += 1
            v[14] += num_bytes
            if num_bytes > v[17]:
                v[17] = num_bytes
        tensors, gpu = get("num_tensors"), get("num_bytes_gpu")
        if tensors is not None and tensors > v[18]:
            v[18] = tensors
        if gpu is not None and gpu > v[19]:
            v[19] = gpu
    return minutes


def coarser(minutes: dict[tuple, list]) -> list[tuple[Any, ...]]:
    """Given minute rollups, return rows for every span (minute, hour, day): key + values, sorted
    by key so concurrent writers always lock rollup rows in the same order (no deadlocks)."""
    out: dict[tuple, list] = dict(minutes)
    for span in (HOUR, DAY):
        for key, values in minutes.items():
            start = key[2] - key[2] % span
            coarse = (key[0], span, start, *key[3:])
            have = out.get(coarse)
            if have is None:
                out[coarse] = list(values)
            else:
                merge_into(have, values)
    return [(*key, *values) for key, values in sorted(out.items())]


def merge_minutes(into: dict[tuple, list], minutes: dict[tuple, list]) -> None:
    """Add one fold's per-minute rollups into an accumulated set (several batches, one write)."""
    for key, values in minutes.items():
        have = into.get(key)
        if have is None:
            into[key] = values
        else:
            merge_into(have, values)


def merge_into(into: list, values: Sequence[float]) -> None:
    """Add ``values`` into ``into`` (sums and histogram added, maxima kept)."""
    for i in range(_N_SUMS):
        into[i] += values[i]
    for i in range(_N_SUMS, _FIRST_HIST):
        if values[i] > into[i]:
            into[i] = values[i]
    for i in range(_FIRST_HIST, len(VALUE_COLUMNS)):
        into[i] += values[i]


def summarise(values: Sequence[float], cost_per_1000: float | None = None) -> dict[str, Any]:
    """Given summed rollup values (VALUE_COLUMNS order), return the figures ``/v1/stats`` shows.

    error_rate = error events / (predict + error events); fallback_rate = fallback events per
    ``init`` (fallbacks per client start)."""
    v = dict(zip(VALUE_COLUMNS, values, strict=True))
    hist = [v[c] or 0 for c in HIST_COLUMNS]
    attempts = v["n_predict"] + v["n_error"]

    def mean(total: str, n: str) -> float | None:
        return _round(v[total] / v[n]) if v[n] else None

    def p(q: float) -> float | None:
        return _round(percentile(hist, q))

    out = {
        "count": int(v["n_events"]),
        "events": {k: int(v[f"n_{k}"]) for k in EVENT_KINDS},
        "predictions": int(v["predictions"]),
        "latency_ms": {"p50": p(0.5), "p95": p(0.95), "p99": p(0.99),
                       "mean": mean("predict_ms_sum", "n_predict")},
        "init_ms": {"mean": mean("load_ms_sum", "load_n"), "max": _max(v, "load_ms_max", "load_n")},
        "warmup_ms": {"mean": mean("warm_ms_sum", "warm_n"), "max": _max(v, "warm_ms_max", "warm_n")},
        "error_rate": _round(v["n_error"] / attempts, 6) if attempts else None,
        "fallback_rate": _round(v["n_fallback"] / v["n_init"], 6) if v["n_init"] else None,
        "memory": {
            "bytes_mean": mean("mem_bytes_sum", "mem_n"),
            "bytes_max": _max(v, "mem_bytes_max", "mem_n"),
            "tensors_max": int(v["mem_tensors_max"] or 0) or None,
            "gpu_bytes_max": int(v["mem_gpu_max"] or 0) or None,
        },
    }
    if cost_per_1000 is not None:
        out["savings"] = {"cost_per_1000": cost_per_1000,
                          "estimated": _round(v["predictions"] / 1000 * cost_per_1000, 2)}
    return out


EVENT_KINDS = ("init", "load", "predict", "error", "fallback", "memory")


def _max(v: dict[str, Any], column: str, n: str) -> float | None:
    return _round(v[column]) if v[n] else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)
