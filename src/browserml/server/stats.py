"""``GET /v1/stats`` and the dashboard's time series, read from the telemetry rollups.

* ``GET /v1/stats?model=<name>&since=<when>&until=<when>&group_by=engine|backend|device|variant|version``
  -> ``{"model", "since", "until", "group_by", "cost_per_1000", "clients", "addresses", "total": {...},
  "groups": [{"key", ...}]}`` (``clients``/``addresses``: distinct senders in the window)
  where each summary holds count, events by type, predictions, ``latency_ms`` p50/p95/p99/mean,
  ``init_ms`` and ``warmup_ms`` (mean, max), ``error_rate``, ``fallback_rate``, ``memory`` and the
  estimated ``savings`` against server inference at ``settings.server_cost_per_1000``.
* ``GET /v1/stats/series?model=&since=&until=&group_by=&step=minute|hour|day`` -> ``{"step_ms",
  "points": [{"t": <ms>, "key", ...summary}]}``; ``step`` defaults to minute up to 6 h, hour up to
  10 days, day beyond, and a series is capped at 2,000 steps.
* ``GET /v1/stats/models`` -> ``{"models": [...]}``: models that have sent telemetry.

``since``/``until`` take a duration back from now (``90s``, ``15m``, ``6h``, ``30d``), an ISO-8601
time (UTC when it has no offset) or epoch milliseconds; ``since`` defaults to 24 h, ``until`` to now.
Figures have minute resolution (the rollups'). All of it needs the admin token unless
``settings.dashboard_public``. Queries run in the thread pool (blocking DB reads, never the writer).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import TelemetryError
from ..telemetry.stats import DAY, GROUP_BY, HOUR, MINUTE, summarise
from ..telemetry.store import TelemetryStore
from .auth import is_authorized, unauthorized

DURATION = re.compile(r"^(\d{1,12}(?:\.\d{1,6})?)(s|m|h|d)$", re.ASCII)
# The times a window may name: the epoch to the end of year 9999 (what datetime can print).
MAX_WHEN_MS = 253_402_300_799_999
UNIT_MS = {"s": 1000, "m": MINUTE, "h": HOUR, "d": DAY}
STEPS = {"minute": MINUTE, "hour": HOUR, "day": DAY}
MODEL = re.compile(r"^[a-z0-9-]{1,64}$")
MAX_POINTS = 2000


def parse_when(value: str | None, default_ms: int, now_ms: int, what: str) -> int:
    """Given a ``since``/``until`` value, return epoch ms, clamped to [0, year 9999]; raise
    TelemetryError naming the forms for anything else (``²``, ``1e999``, 30-digit numbers)."""
    if value is None or value == "":
        return default_ms
    value = value.strip()
    match = DURATION.match(value)
    if match:
        return _clamp(now_ms - int(float(match.group(1)) * UNIT_MS[match.group(2)]))
    if value.isascii() and value.isdigit() and len(value) <= 15:
        return _clamp(int(value))
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return _clamp(int(moment.timestamp() * 1000))
    except (ValueError, OverflowError):
        raise TelemetryError(
            f"{what} must be a duration (15m, 6h, 30d), an ISO-8601 time or epoch ms; got {value[:40]!r}"
        ) from None


def _clamp(ms: int) -> int:
    return min(max(ms, 0), MAX_WHEN_MS)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _query(request: Request) -> tuple[str, int, int, str | None]:
    params = request.query_params
    model = params.get("model")
    if not model or not MODEL.match(model):
        raise TelemetryError("model is required and must match [a-z0-9-]{1,64}")
    group_by = params.get("group_by") or None
    if group_by is not None and group_by not in GROUP_BY:
        raise TelemetryError(f"group_by must be one of {', '.join(GROUP_BY)}; got {group_by!r}")
    now_ms = int(time.time() * 1000)
    since = parse_when(params.get("since"), now_ms - DAY, now_ms, "since")
    until = parse_when(params.get("until"), now_ms, now_ms, "until")
    if since >= until:
        raise TelemetryError("since must be before until")
    return model, since, until, group_by


def _allowed(request: Request) -> bool:
    state = request.app.state
    return state.settings.dashboard_public or is_authorized(request, state.admin_token)


def _store(request: Request) -> TelemetryStore:
    return request.app.state.telemetry.store


def _key(value: Any) -> Any:
    return int(value) if isinstance(value, float) else value


async def stats(request: Request) -> Response:
    """``GET /v1/stats``: summary figures for one model over a window, optionally grouped."""
    if not _allowed(request):
        return unauthorized()
    model, since, until, group_by = _query(request)
    cost = request.app.state.settings.server_cost_per_1000
    groups, total = await run_in_threadpool(_store(request).summary, model, since, until, group_by)
    clients, addresses = await run_in_threadpool(_store(request).clients, model, since, until)
    body = {
        "model": model, "since": _iso(since), "until": _iso(until), "group_by": group_by,
        "cost_per_1000": cost,
        # How many distinct clients and addresses the counts come from (issue 17): a figure
        # from few of them is one a single forger could have made.
        "clients": clients, "addresses": addresses,
        "total": summarise(total, cost),
        "groups": [{"key": _key(key), **summarise(values, cost)} for key, values in groups]
        if group_by else [],
    }
    return JSONResponse(body, headers={"cache-control": "no-store"})


async def series(request: Request) -> Response:
    """``GET /v1/stats/series``: one summary per time step (and group) for the dashboard charts."""
    if not _allowed(request):
        return unauthorized()
    model, since, until, group_by = _query(request)
    step_name = request.query_params.get("step")
    if step_name is None:
        window = until - since
        step = MINUTE if window <= 6 * HOUR else HOUR if window <= 10 * DAY else DAY
    elif step_name in STEPS:
        step = STEPS[step_name]
    else:
        raise TelemetryError(f"step must be one of {', '.join(STEPS)}; got {step_name!r}")
    if (until - since) / step > MAX_POINTS:
        asked = (until - since) // step
        raise TelemetryError(f"{asked} steps asked; at most {MAX_POINTS}: use a coarser step")
    rows = await run_in_threadpool(_store(request).series, model, since, until, step, group_by)
    points = [{"t": start, "key": _key(key) if group_by else None, **summarise(values)}
              for start, key, values in rows]
    body = {"model": model, "since": _iso(since), "until": _iso(until), "group_by": group_by,
            "step_ms": step, "points": points}
    return JSONResponse(body, headers={"cache-control": "no-store"})


async def models(request: Request) -> Response:
    """``GET /v1/stats/models``: the models that have sent telemetry."""
    if not _allowed(request):
        return unauthorized()
    names = await run_in_threadpool(_store(request).models)
    return JSONResponse({"models": names, "cost_per_1000": request.app.state.settings.server_cost_per_1000},
                        headers={"cache-control": "no-store"})


def routes() -> list[Route]:
    """Return the stats routes."""
    return [
        Route("/v1/stats", stats, methods=["GET"]),
        Route("/v1/stats/series", series, methods=["GET"]),
        Route("/v1/stats/models", models, methods=["GET"]),
    ]
