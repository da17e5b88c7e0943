"""Durable telemetry storage: raw events plus incrementally maintained rollups, SQLite or PostgreSQL.

Contract
--------
* :meth:`TelemetryStore.ingest` writes one batch — its raw events *and* the rollup rows they change —
  in **one transaction** and returns only after the commit (:meth:`commit` does the same for
  several batches at once: the server's group commit, one fsync for every batch that queued while
  the previous commit was in flight), so the server answers 2xx only for
  events that survive a crash (SQLite: WAL with ``synchronous=FULL``, the commit fsyncs the WAL;
  PostgreSQL: the default ``synchronous_commit=on``). A batch is all or nothing.
* Reads (:meth:`summary`, :meth:`series`, :meth:`models`) never block ingest: WAL readers and
  PostgreSQL MVCC readers see the last committed state.
* :meth:`purge_chunk` deletes at most ``chunk`` old raw batches (and one hour of old minute rollups
  per model) per transaction; the server calls it repeatedly between ingest batches, so retention
  never holds the writer for long.

Why this design (ingest ≥ 250k events/s SQLite / 150k PostgreSQL, ``/v1/stats`` ≤ 200 ms at 5M)
--------------------------------------------------------------------------------------------------
* **Raw events are stored one row per batch, as the batch arrived** (``telemetry_batches``: the
  server's receive time, the event count and the validated events as one JSON array), with a
  ``telemetry_events`` *view* that expands them into one typed row per event for ad-hoc SQL.
  Measured per 500-event batch on SQLite: one multi-row INSERT of 17 columns per event cost
  ~1.5 ms of binding and B-tree work on the writer (about half of the whole request), one
  JSON row ~0.1 ms; on PostgreSQL it replaces a COPY of 500 rows. Raw events are read only for
  audits, retention and tests — every dashboard query reads rollups — so the write side gets the
  cheap layout. The primary key is the insertion order (SQLite ``INTEGER PRIMARY KEY``, PostgreSQL
  an identity column), which is also (nearly) time order, so retention deletes from the oldest id
  upward without an index on time.
* **Rollups are maintained at ingest, in the same transaction,** so they are exact and never lag:
  the batch is folded in Python into per-minute deltas (see :func:`.stats.fold` — one dict lookup
  and a few additions per event), widened to hour and day rows, and upserted (``ON CONFLICT DO
  UPDATE SET n = n + excluded.n``). A 500-event batch touches a handful of rollup rows, so the
  upserts cost a few percent of the batch. Rows are upserted in sorted key order, so concurrent
  PostgreSQL writers lock them in one order and cannot deadlock.
* **Stats read rollups, never raw events.** Latency percentiles come from log-bucketed histogram
  columns (``h00``..``h81``) that the database sums like any counter. A window is covered by day
  rows for whole days, hour rows for the whole hours at its ends and minute rows for the partial
  hours, so 30 days cost ~30 + 2·23 + 2·59 rows per dimension combination whatever the event count
  — a few thousand rows summed in one indexed range scan (primary key ``(model, span, start, …)``)
  and grouped in SQL. Only the group totals (one row per engine/backend/...) leave the database.
* **Telemetry has its own SQLite file** (``telemetry.sqlite3`` in the data dir): SQLite allows one
  writer per file, and ingest must never queue behind a registry publish (or the reverse). Writes go
  through one persistent connection owned by one writer thread (:attr:`writers` = 1), which avoids
  SQLite's sleeping busy-handler entirely; PostgreSQL runs :attr:`writers` concurrent transactions.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..database import database_target, open_pool, sqlite_write
from ..settings import Settings
from .batch import Prepared, prepare
from .schema import DEFAULTS, Event
from .stats import (
    DAY,
    HOUR,
    KEY_COLUMNS,
    MAX_COLUMNS,
    MINUTE,
    SUM_COLUMNS,
    VALUE_COLUMNS,
    coarser,
    merge_into,
    merge_minutes,
)

EVENT_COLUMNS = (
    "at", "type", "model", "version", "variant", "engine", "backend", "device", "ms", "warmup_ms",
    "batch", "num_tensors", "num_bytes", "num_bytes_gpu", "phase", "code", "reason",
)  # fmt: skip
GROUPABLE = {"engine", "backend", "device", "variant", "version"}
INSERT_BATCH = "INSERT INTO telemetry_batches (received_ms, n, events) VALUES (?, ?, ?)"
# Idempotency (issue 20): a batch carrying a client key is stored once per key, whichever server
# instance and whichever attempt gets it first; the unique index makes PostgreSQL serialize two
# instances inserting one key (the second waits for the first's commit, then does nothing).
INSERT_KEYED = (
    "INSERT INTO telemetry_batches (received_ms, n, events, batch_key) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (batch_key) DO NOTHING RETURNING id"
)
KEY_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS telemetry_batches_key ON telemetry_batches (batch_key)"
INSERT_CLIENT = ("INSERT INTO telemetry_clients (model, start, client, source) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT DO NOTHING")
# Who sent telemetry for a model in an hour: one row per (model, hour, client), so a window's
# distinct clients and addresses are exact at hour resolution (issue 17: a dashboard shows how many
# clients an event count comes from, and a decision can require many of them). Hours, not
# minutes: a browser that reports all day costs 24 rows a day, not 1,440.
CLIENTS_TABLE = """CREATE TABLE IF NOT EXISTS telemetry_clients (
    model TEXT NOT NULL, start {big} NOT NULL, client TEXT NOT NULL, source TEXT NOT NULL,
    PRIMARY KEY (model, start, client))"""
SQLITE_FILE = "telemetry.sqlite3"


def _batches_table(id_column: str, big: str, json_type: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS telemetry_batches (
        id {id_column}, received_ms {big} NOT NULL, n INTEGER NOT NULL, events {json_type} NOT NULL)"""


# One typed row per stored event: EVENT_COLUMNS, absent fields read as the schema's DEFAULTS.
_SQLITE_EVENTS_VIEW = """CREATE VIEW IF NOT EXISTS telemetry_events AS SELECT
    b.id AS batch_id, CAST(e.key AS INTEGER) AS position,
    b.received_ms - CAST(COALESCE(json_extract(e.value, '$.age_ms'), 0) AS INTEGER) AS at,
    {columns}
    FROM telemetry_batches AS b, json_each(b.events) AS e"""
_POSTGRES_EVENTS_VIEW = """CREATE OR REPLACE VIEW telemetry_events AS SELECT
    b.id AS batch_id, e.position - 1 AS position,
    b.received_ms - trunc(COALESCE((e.value->>'age_ms')::double precision, 0))::bigint AS at,
    {columns}
    FROM telemetry_batches AS b
    CROSS JOIN LATERAL json_array_elements(b.events) WITH ORDINALITY AS e(value, position)"""
# PostgreSQL's ->> yields text; SQLite's json_extract keeps JSON's own types.
_POSTGRES_TYPES = {"version": "integer", "ms": "double precision", "warmup_ms": "double precision",
                   "batch": "integer", "num_tensors": "bigint", "num_bytes": "bigint",
                   "num_bytes_gpu": "bigint"}


def _events_view(postgres: bool) -> str:
    """Return the CREATE VIEW that expands stored batches into one row per event."""
    columns = []
    for column in EVENT_COLUMNS[1:]:
        if postgres:
            value = f"(e.value->>'{column}')::{_POSTGRES_TYPES.get(column, 'text')}"
        else:
            value = f"json_extract(e.value, '$.{column}')"
        default = DEFAULTS.get(column)
        if default is not None:  # the defaults are "" and small numbers: safe as SQL literals
            literal = "''" if default == "" else str(default)
            value = f"COALESCE({value}, {literal})"
        columns.append(f"{value} AS {column}")
    template = _POSTGRES_EVENTS_VIEW if postgres else _SQLITE_EVENTS_VIEW
    return template.format(columns=",\n    ".join(columns))


def _rollups_table(real: str, big: str) -> str:
    sums = ", ".join(f"{c} {real if c.endswith('_sum') else big} NOT NULL" for c in SUM_COLUMNS)
    maxes = ", ".join(f"{c} {real} NOT NULL" for c in MAX_COLUMNS)
    hist = ", ".join(f"{c} {big} NOT NULL" for c in VALUE_COLUMNS[len(SUM_COLUMNS) + len(MAX_COLUMNS):])
    return f"""CREATE TABLE IF NOT EXISTS telemetry_rollups (
        model TEXT NOT NULL, span INTEGER NOT NULL, start {big} NOT NULL, version INTEGER NOT NULL,
        variant TEXT NOT NULL, engine TEXT NOT NULL, backend TEXT NOT NULL, device TEXT NOT NULL,
        {sums}, {maxes}, {hist},
        PRIMARY KEY ({", ".join(KEY_COLUMNS)}))"""


def _upsert_sql(max_function: str, placeholder: str) -> str:
    columns = KEY_COLUMNS + VALUE_COLUMNS
    values = ", ".join([placeholder] * len(columns))
    updates = []
    for c in VALUE_COLUMNS:
        if c in MAX_COLUMNS:
            updates.append(f"{c} = {max_function}(telemetry_rollups.{c}, excluded.{c})")
        else:
            updates.append(f"{c} = telemetry_rollups.{c} + excluded.{c}")
    return (
        f"INSERT INTO telemetry_rollups ({', '.join(columns)}) VALUES ({values}) "
        f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {', '.join(updates)}"
    )


def _aggregate_select(max_function_agg: str = "MAX") -> str:
    parts = [f"SUM({c})" for c in SUM_COLUMNS]
    parts += [f"{max_function_agg}({c})" for c in MAX_COLUMNS]
    parts += [f"SUM({c})" for c in VALUE_COLUMNS[len(SUM_COLUMNS) + len(MAX_COLUMNS):]]
    return ", ".join(parts)


def cover(since_ms: int, until_ms: int) -> list[tuple[int, int, int]]:
    """Given a window, return (span, first start, end) ranges of rollup rows that tile it: day rows
    for whole days, hour rows for whole hours at the ends, minute rows for the rest. The window is
    widened to whole minutes (minute resolution is what the rollups keep)."""
    lo = since_ms - since_ms % MINUTE
    hi = -(-until_ms // MINUTE) * MINUTE
    ranges: list[tuple[int, int, int]] = []

    def tile(lo: int, hi: int, spans: Sequence[int]) -> None:
        if lo >= hi:
            return
        span, rest = spans[0], spans[1:]
        if not rest:
            ranges.append((span, lo, hi))
            return
        first = -(-lo // span) * span
        last = hi - hi % span
        if first >= last:
            tile(lo, hi, rest)
            return
        tile(lo, first, rest)
        ranges.append((span, first, last))
        tile(last, hi, rest)

    tile(lo, hi, (DAY, HOUR, MINUTE))
    return ranges


class TelemetryStore(ABC):
    """Raw events and rollups behind one interface; subclasses supply connections and dialect."""

    placeholder = "?"
    max_function = "MAX"
    writers = 1

    @abstractmethod
    def _write(self, batches: list[tuple[int, int, str]], rollups: list[tuple[Any, ...]],
               clients: Sequence[tuple[str, int, str, str]] = ()) -> None:
        """Insert raw batches ``(received_ms, n, events JSON)``, upsert rollups and record
        ``(model, minute, client, source)`` rows in one transaction; return after the commit."""

    @abstractmethod
    @contextmanager
    def _read(self) -> Iterator[Any]:
        """Yield an object with ``execute(sql, params)`` returning a cursor, for reads only."""

    @abstractmethod
    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """Yield an ``execute(sql, params)`` callable inside one write transaction (the writer's)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    # -- ingest -----------------------------------------------------------------------------------

    def ingest(self, events: Sequence[Event], received_ms: int) -> int:
        """Given validated events and the server time they arrived (ms since the epoch), store
        them durably with their rollups in one transaction; return how many were stored."""
        return self.commit([prepare(list(events), received_ms)])

    def commit(self, batches: Sequence[Prepared]) -> int:
        """Store several prepared batches in ONE transaction (one fsync): the server's group
        commit. All or nothing, like :meth:`ingest`; return how many events were stored (a batch
        whose key is already stored adds none)."""
        fresh = self.commit_each(batches)
        return sum(b.n for b, new in zip(batches, fresh, strict=True) if new)

    def commit_each(self, batches: Sequence[Prepared]) -> list[bool]:
        """Like :meth:`commit`; return, per batch, False when its idempotency key was stored
        before (by any server on this database), so nothing of it was stored again."""
        keyed = sorted((b for b in batches if b.n and b.key), key=lambda b: b.key or "")
        if keyed:
            plain = [b for b in batches if b.n and not b.key]
            fresh = self._write_keyed(plain, keyed)
            return [not b.key or fresh.get(id(b), False) for b in batches]
        self._commit_plain(batches)
        return [True] * len(batches)

    def _keyed_rollups(self, run: Any, plain: list[Prepared], keyed: list[Prepared]) -> tuple[
        dict[int, bool], list[tuple[Any, ...]], list[tuple[str, int, str, str]]
    ]:
        """Inside a write transaction: insert ``keyed`` (sorted by key, so two instances lock keys
        in one order) with ``run``; return which were new, and the rollup and client rows of the
        new and the ``plain`` batches (a duplicate must not count twice in the rollups either)."""
        fresh: dict[int, bool] = {}
        sql = self._sql(INSERT_KEYED)
        for b in keyed:
            fresh[id(b)] = bool(run(sql, (b.received_ms, b.n, b.events_json, b.key)).fetchall())
        minutes: dict[tuple, list] = {}
        clients: set[tuple[str, int, str, str]] = set()
        for b in [*plain, *(b for b in keyed if fresh[id(b)])]:
            merge_minutes(minutes, b.minutes)
            clients.update(_client_rows(b))
        return fresh, coarser(minutes), sorted(clients)

    @abstractmethod
    def _write_keyed(self, plain: list[Prepared], keyed: list[Prepared]) -> dict[int, bool]:
        """Store ``plain`` batches and the ``keyed`` ones not stored before, with their rollups, in
        one transaction; return ``{id(batch): stored now}`` for the keyed ones."""

    def _commit_plain(self, batches: Sequence[Prepared]) -> None:
        """The group commit of batches without keys (the layout measured in BENCHMARKS.md)."""
        batches = [b for b in batches if b.n]
        if not batches:
            return
        minutes: dict[tuple, list] = {}
        clients: set[tuple[str, int, str, str]] = set()
        for batch in batches:
            merge_minutes(minutes, batch.minutes)
            clients.update(_client_rows(batch))
        self._write([(b.received_ms, b.n, b.events_json) for b in batches], coarser(minutes),
                    sorted(clients))

    def clients(self, model: str, since_ms: int, until_ms: int) -> tuple[int, int]:
        """Given a model and window, return (distinct clients, distinct addresses) that sent
        accepted telemetry about it (hour resolution: the window is widened to whole hours)."""
        lo = since_ms - since_ms % HOUR
        sql = ("SELECT COUNT(DISTINCT client), COUNT(DISTINCT source) FROM telemetry_clients "
               "WHERE model = ? AND start >= ? AND start < ?")
        with self._read() as conn:
            row = conn.execute(self._sql(sql), (model, lo, until_ms)).fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    # -- reads ------------------------------------------------------------------------------------

    def summary(self, model: str, since_ms: int, until_ms: int, group_by: str | None) -> tuple[
        list[tuple[Any, list]], list
    ]:
        """Given a model, window and optional dimension, return ([(group value, summed values)],
        summed values over all groups). Values follow :data:`.stats.VALUE_COLUMNS`."""
        ranges = cover(since_ms, until_ms)
        if not ranges:
            return [], [0] * len(VALUE_COLUMNS)
        group = _group_column(group_by)
        # One primary-key range scan per tile, glued with UNION ALL: an OR of the ranges makes
        # both SQLite and PostgreSQL scan every row of the model instead (measured 600 ms at 5M).
        scans = " UNION ALL ".join(
            "SELECT * FROM telemetry_rollups WHERE model = ? AND span = ? AND start >= ? AND start < ?"
            for _ in ranges
        )
        params: list[Any] = []
        for span, lo, hi in ranges:
            params += [model, span, lo, hi]
        grouping = f" GROUP BY {group} ORDER BY {group}" if group_by else ""
        sql = f"SELECT {group}, {_aggregate_select()} FROM ({scans}) AS tiles{grouping}"
        with self._read() as conn:
            rows = conn.execute(self._sql(sql), params).fetchall()
        groups = [(row[0], _numbers(row[1:])) for row in rows if row[1] is not None]
        total = [0] * len(VALUE_COLUMNS)
        for _, values in groups:
            merge_into(total, values)
        return groups, total

    def series(
        self, model: str, since_ms: int, until_ms: int, span: int, group_by: str | None
    ) -> list[tuple[int, Any, list]]:
        """Given a model, window, rollup span and optional dimension, return [(start, group value,
        summed values)] ordered by start: one point per span per group."""
        group = _group_column(group_by)
        lo = since_ms - since_ms % span
        keys = f"start, {group}" if group_by else "start"
        sql = (
            f"SELECT start, {group}, {_aggregate_select()} FROM telemetry_rollups "
            f"WHERE model = ? AND span = ? AND start >= ? AND start < ? "
            f"GROUP BY {keys} ORDER BY {keys}"
        )
        with self._read() as conn:
            rows = conn.execute(self._sql(sql), (model, span, lo, until_ms)).fetchall()
        return [(int(row[0]), row[1], _numbers(row[2:])) for row in rows]

    def models(self) -> list[str]:
        """Return every model that has sent telemetry (from day rollups: a handful of rows)."""
        with self._read() as conn:
            rows = conn.execute(
                self._sql("SELECT DISTINCT model FROM telemetry_rollups WHERE span = ? ORDER BY model"),
                (DAY,),
            ).fetchall()
        return [row[0] for row in rows]

    def count_events(self, where: str = "", params: Sequence[Any] = ()) -> int:
        """Return how many raw events match ``where`` (a fixed SQL fragment with ``?`` params;
        tests and benchmarks use it)."""
        sql = "SELECT COUNT(*) FROM telemetry_events" + (f" WHERE {where}" if where else "")
        with self._read() as conn:
            return int(conn.execute(self._sql(sql), tuple(params)).fetchone()[0])

    # -- retention --------------------------------------------------------------------------------

    def purge_chunk(self, now_ms: int, raw_days: float, rollup_days: float, chunk: int) -> int:
        """Delete, in one short transaction, up to ``chunk`` raw batches received more than
        ``raw_days`` ago (oldest ids first; an event is at most a day older than its batch) and up
        to an hour of minute rollups older than ``rollup_days`` per model; return the events and
        rollup rows deleted (0 means nothing old is left)."""
        raw_cutoff = now_ms - int(raw_days * DAY)
        rollup_cutoff = now_ms - int(rollup_days * DAY)
        deleted = 0
        with self._transaction() as run:
            first = run(self._sql("SELECT MIN(id) FROM telemetry_batches"), ()).fetchone()[0]
            if first is not None:
                old = (first, first + chunk, raw_cutoff)
                where = "WHERE id >= ? AND id < ? AND received_ms < ?"
                events = run(self._sql(f"SELECT SUM(n) FROM telemetry_batches {where}"), old).fetchone()[0]
                run(self._sql(f"DELETE FROM telemetry_batches {where}"), old)
                deleted += int(events or 0)
            models = run(
                self._sql("SELECT DISTINCT model FROM telemetry_rollups WHERE span = ?"), (DAY,)
            ).fetchall()
            for (model,) in models:
                oldest = run(
                    self._sql("SELECT MIN(start) FROM telemetry_rollups WHERE model = ? AND span = ?"),
                    (model, MINUTE),
                ).fetchone()[0]
                if oldest is None or oldest >= rollup_cutoff:
                    continue
                cursor = run(
                    self._sql("DELETE FROM telemetry_rollups WHERE model = ? AND span = ? AND start < ?"),
                    (model, MINUTE, min(rollup_cutoff, oldest + HOUR)),
                )
                deleted += max(cursor.rowcount, 0)
                cursor = run(
                    self._sql("DELETE FROM telemetry_clients WHERE model = ? AND start < ?"),
                    (model, min(rollup_cutoff, oldest + HOUR)),
                )
                deleted += max(cursor.rowcount, 0)
        return deleted


def _client_rows(batch: Prepared) -> list[tuple[str, int, str, str]]:
    """The ``telemetry_clients`` rows of one batch: (model, hour, client, source) per hour."""
    if not batch.client:
        return []
    return list({(key[0], key[2] - key[2] % HOUR, batch.client, batch.source) for key in batch.minutes})


def _group_column(group_by: str | None) -> str:
    """Given a dimension name, return its column (from a fixed allowlist) or a constant."""
    if group_by is None:
        return "''"
    if group_by not in GROUPABLE:
        raise ValueError(f"group_by must be one of {sorted(GROUPABLE)}, got {group_by!r}")
    return group_by


def _numbers(values: Sequence[Any]) -> list:
    """Given aggregate results, return plain numbers (PostgreSQL's SUM(bigint) is a Decimal)."""
    return [0 if v is None else v if isinstance(v, int | float) else float(v) for v in values]


class SQLiteTelemetryStore(TelemetryStore):
    """One WAL-mode SQLite file; one persistent writer connection used by one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.execute("PRAGMA synchronous=FULL")
        self._lock = threading.Lock()
        self._upsert = _upsert_sql("MAX", "?")
        with self._transaction() as run:
            run(_batches_table("INTEGER PRIMARY KEY", "INTEGER", "TEXT"), ())
            columns = {row[1] for row in run("PRAGMA table_info(telemetry_batches)", ()).fetchall()}
            if "batch_key" not in columns:
                run("ALTER TABLE telemetry_batches ADD COLUMN batch_key TEXT", ())
            run(KEY_INDEX, ())
            run(_events_view(postgres=False), ())
            run(_rollups_table("REAL", "INTEGER"), ())
            run(CLIENTS_TABLE.format(big="INTEGER"), ())

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock, sqlite_write(self._writer) as conn:
            yield conn.execute

    def _write(self, batches: list[tuple[int, int, str]], rollups: list[tuple[Any, ...]],
               clients: Sequence[tuple[str, int, str, str]] = ()) -> None:
        with self._lock, sqlite_write(self._writer) as conn:
            conn.executemany(INSERT_BATCH, batches)
            conn.executemany(self._upsert, rollups)
            if clients:
                conn.executemany(INSERT_CLIENT, clients)

    def _write_keyed(self, plain: list[Prepared], keyed: list[Prepared]) -> dict[int, bool]:
        with self._lock, sqlite_write(self._writer) as conn:
            fresh, rollups, clients = self._keyed_rollups(conn.execute, plain, keyed)
            conn.executemany(INSERT_BATCH, [(b.received_ms, b.n, b.events_json) for b in plain])
            conn.executemany(self._upsert, rollups)
            conn.executemany(INSERT_CLIENT, clients)
        return fresh

    @contextmanager
    def _read(self) -> Iterator[Any]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA query_only=1")
            yield conn
        finally:
            conn.close()

    def close(self) -> None:
        """Close the writer connection (a WAL checkpoint happens on the last close)."""
        with self._lock:
            self._writer.close()


class PostgresTelemetryStore(TelemetryStore):
    """PostgreSQL through a psycopg 3 pool, ``writers`` concurrent transactions."""

    placeholder = "%s"
    max_function = "GREATEST"

    def __init__(self, url: str, writers: int = 1) -> None:
        self.writers = writers
        self.pool = open_pool(url, min_size=writers, max_size=writers + 2)
        self._upsert = _upsert_sql("GREATEST", "%s")
        with self._transaction() as run:
            run(_batches_table("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BIGINT", "json"), ())
            run("ALTER TABLE telemetry_batches ADD COLUMN IF NOT EXISTS batch_key TEXT", ())
            run(KEY_INDEX, ())
            run(_events_view(postgres=True), ())
            run(_rollups_table("DOUBLE PRECISION", "BIGINT"), ())
            run(CLIENTS_TABLE.format(big="BIGINT"), ())

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self.pool.connection() as conn, conn.transaction():
            yield conn.execute

    def _write(self, batches: list[tuple[int, int, str]], rollups: list[tuple[Any, ...]],
               clients: Sequence[tuple[str, int, str, str]] = ()) -> None:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(self._sql(INSERT_BATCH), batches)
            cur.executemany(self._upsert, rollups)
            if clients:
                cur.executemany(self._sql(INSERT_CLIENT), clients)

    def _write_keyed(self, plain: list[Prepared], keyed: list[Prepared]) -> dict[int, bool]:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            fresh, rollups, clients = self._keyed_rollups(cur.execute, plain, keyed)
            if plain:
                cur.executemany(self._sql(INSERT_BATCH), [(b.received_ms, b.n, b.events_json) for b in plain])
            cur.executemany(self._upsert, rollups)
            if clients:
                cur.executemany(self._sql(INSERT_CLIENT), clients)
        return fresh

    @contextmanager
    def _read(self) -> Iterator[Any]:
        with self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()


def open_store(settings: Settings) -> TelemetryStore:
    """Given settings, return the telemetry store on the database the whole server uses:
    PostgreSQL when ``database_url`` is set, else ``telemetry.sqlite3`` in the data dir."""
    target = database_target(settings)
    if target.is_postgres:
        assert target.url is not None
        return PostgresTelemetryStore(target.url, writers=settings.telemetry_pg_writers)
    assert target.sqlite_dir is not None
    return SQLiteTelemetryStore(target.sqlite_dir / SQLITE_FILE)
