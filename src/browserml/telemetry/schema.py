"""The telemetry wire format: what one event in ``POST /v1/telemetry`` may contain.

This is a public contract between the SDK's HTTP sink (``sdk/src/sinks/http.js``, which maps the
SDK's richer in-page events onto it) and the server, so it is strict on purpose:

* ``extra="forbid"`` — an unknown field is a client bug or a probe, never silently stored;
* ``strict=True`` — ``"12"`` is not a number and ``true`` is not an integer (JSON ints are accepted
  where floats are expected, as JSON has one number type);
* every string is bounded (labels 32 characters from a small alphabet, the device class 64), so a
  row's size is bounded and dashboards cannot be flooded with odd labels; ``reason`` (an error
  message, which browsers make arbitrarily long) is truncated to :data:`MAX_REASON` rather than
  refused, because losing an error report over its length would hide exactly what telemetry is for;
* times are milliseconds in ``[0, 1 h]``; ``age_ms`` says how long before sending the event
  happened (at most a day), so the server dates events with *its* clock and no client clock skew
  reaches the data.

``validate_batch`` turns a request body into (good events, per-event problems): the fast path
validates the whole array in pydantic-core's Rust code in one call; only when that fails does it
re-validate event by event, so a bad event costs its own slot, not the batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from pydantic.types import StringConstraints
from pydantic_core import PydanticSerializationError
from typing_extensions import TypedDict

EVENT_TYPES = ("init", "load", "predict", "error", "fallback", "memory")
MAX_REASON = 500
MAX_AGE_MS = 86_400_000.0
MAX_MS = 3_600_000.0
MAX_ERRORS_REPORTED = 20


def _truncate_reason(value: Any) -> Any:
    """Cut over-long error text instead of refusing the event (other types fail validation)."""
    return value[:MAX_REASON] if isinstance(value, str) else value


Reason = Annotated[str, BeforeValidator(_truncate_reason), StringConstraints(max_length=MAX_REASON)]
Label = Annotated[str, StringConstraints(max_length=32, pattern=r"^[A-Za-z0-9_.:/+-]*$")]
Millis = Annotated[float, Field(ge=0, le=MAX_MS)]
Count = Annotated[int, Field(ge=0, le=2**53)]


@with_config(ConfigDict(extra="forbid", strict=True, allow_inf_nan=False))
class Event(TypedDict):
    """One telemetry event. Only ``type`` and ``model`` are required; absent fields read as
    :data:`DEFAULTS`.

    ``ms`` is the event's duration: the classify call for ``predict``, the whole load for ``load``,
    a rebuild for ``memory``. ``warmup_ms`` is the first (warm-up) prediction, reported by ``load``.
    Memory figures are TF.js ``tf.memory()`` counters at the time of the event. (A pydantic-validated
    ``TypedDict`` rather than a model: validated events stay plain dicts, which measured ~45 %
    cheaper per event on the ingest path.)"""

    type: Literal["init", "load", "predict", "error", "fallback", "memory"]
    model: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
    version: NotRequired[Annotated[int, Field(ge=0, le=2**31 - 1)]]
    variant: NotRequired[Label]
    engine: NotRequired[Label]
    backend: NotRequired[Label]
    device: NotRequired[Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z0-9_.:/+-]*$")]]
    age_ms: NotRequired[Annotated[float, Field(ge=0, le=MAX_AGE_MS)]]
    ms: NotRequired[Millis | None]
    warmup_ms: NotRequired[Millis | None]
    batch: NotRequired[Annotated[int, Field(ge=1, le=10_000)]]
    num_tensors: NotRequired[Count | None]
    num_bytes: NotRequired[Count | None]
    num_bytes_gpu: NotRequired[Count | None]
    phase: NotRequired[Label]
    code: NotRequired[Label]
    reason: NotRequired[Reason]


DEFAULTS: dict[str, Any] = {
    "version": 0, "variant": "", "engine": "", "backend": "", "device": "", "age_ms": 0.0, "ms": None,
    "warmup_ms": None, "batch": 1, "num_tensors": None, "num_bytes": None, "num_bytes_gpu": None,
    "phase": "", "code": "", "reason": "",
}


_BATCH = TypeAdapter(list[Event])
_ONE = TypeAdapter(Event)


class BatchShapeError(ValueError):
    """The body is not JSON, or not a JSON array: the whole request is refused (400)."""


@dataclass
class Validated:
    """Outcome of one batch: the good events, how many were dropped, and why (first few)."""

    events: list[Event]
    dropped: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def validate_batch(body: bytes, max_events: int) -> Validated:
    """Given a request body, return its valid events and the dropped ones' reasons.

    Raises BatchShapeError when the body is not a JSON array, and OverflowError when it holds
    more than ``max_events`` events (both refuse the whole batch)."""
    try:
        events = _BATCH.validate_json(body)
    except ValidationError:
        return _validate_each(body, max_events)
    if len(events) > max_events:
        raise OverflowError(f"batch of {len(events)} events exceeds the {max_events} event limit")
    return Validated(events)


def encode_events(events: list[Event]) -> str:
    """Given validated events, return the compact JSON array that is stored (the same adapter
    that validated them, so pydantic's Rust serializer; over-long reasons are already cut).

    Lone surrogates (valid in a JSON string, not in UTF-8) are replaced with U+FFFD, in place."""
    try:
        return _BATCH.dump_json(events).decode()
    except PydanticSerializationError:
        for event in events:
            for key, value in event.items():
                if isinstance(value, str):
                    event[key] = well_formed(value)  # type: ignore[literal-required]
        return _BATCH.dump_json(events).decode()


def well_formed(text: str) -> str:
    """Given a string, return it with every lone UTF-16 surrogate replaced by U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _validate_each(body: bytes, max_events: int) -> Validated:
    """Slow path: parse, check the shape, then validate event by event."""
    try:
        items = json.loads(body, parse_int=_bounded_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BatchShapeError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise BatchShapeError("malformed JSON: nested too deep; events are flat objects") from None
    if not isinstance(items, list):
        raise BatchShapeError(f"body must be a JSON array of events, got {type(items).__name__}")
    if len(items) > max_events:
        raise OverflowError(f"batch of {len(items)} events exceeds the {max_events} event limit")
    result = Validated([])
    for index, item in enumerate(items):
        try:
            result.events.append(_ONE.validate_python(item))
        except ValidationError as exc:
            result.dropped += 1
            if len(result.errors) < MAX_ERRORS_REPORTED:
                result.errors.append({"index": index, "error": _describe(exc)})
    return result


def _bounded_int(digits: str) -> int | str:
    """JSON integer parser: no field of ours needs more than 20 digits, so a longer one is left
    as its text (which then fails its event's validation) instead of Python's int() refusing it
    and the whole batch with it."""
    return int(digits) if len(digits) <= 20 else digits


def _describe(exc: ValidationError) -> str:
    """Given a validation error, return a one-line reason naming each bad field."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "event"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
