"""Registry metadata: versions and channels, in SQLite or PostgreSQL behind one small interface.

SQLite (one WAL-mode file in the data dir) needs no service and suits one machine; PostgreSQL (a
psycopg 3 connection pool) suits several servers sharing one registry. ``settings.database_url``
picks: unset means SQLite. Both run the *same* parameterised SQL, written once in :class:`Database`
with ``?`` placeholders; the PostgreSQL subclass only swaps them for ``%s``. The schema is created
on open, so a fresh data dir or an empty database just works.

The data model is small on purpose:

* ``versions`` — one row per published (model, version), holding the validated build as JSON. A
  publish is a single transaction, so a version either exists whole or not at all.
* ``channel_events`` — an append-only log of what each channel points at (version, canary
  percentage and the version the rest of the clients keep). The newest row not rolled back is the
  channel's state; rollback marks it rolled back, which makes the one before current again in one
  statement-pair transaction — seconds, no file moves.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..database import database_target, open_pool, sqlite_write
from ..errors import NotFoundError, RegistryError
from ..settings import Settings

Run = Callable[[str, Sequence[Any]], Any]
"""Execute one parameterised statement inside the current transaction; return its cursor."""

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS versions (
        model TEXT NOT NULL,
        version INTEGER NOT NULL,
        build TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (model, version)
    )""",
    """CREATE TABLE IF NOT EXISTS channel_events (
        id {id_column},
        model TEXT NOT NULL,
        channel TEXT NOT NULL,
        version INTEGER NOT NULL,
        percent INTEGER NOT NULL,
        base_version INTEGER,
        rolled_back INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS channel_events_lookup ON channel_events (model, channel, id)",
)

_CURRENT = (
    "SELECT id, channel, version, percent, base_version, created_at FROM channel_events "
    "WHERE model = ? AND channel = ? AND rolled_back = 0 ORDER BY id DESC LIMIT 1"
)


@dataclass(frozen=True)
class ChannelState:
    """What a channel serves: ``version`` to ``percent`` % of clients, ``base_version`` to the rest
    (None when percent is 100)."""

    channel: str
    version: int
    percent: int
    base_version: int | None
    updated_at: str


@dataclass(frozen=True)
class VersionRow:
    """One published version with its build (the validated ``variants.json`` plus registry data)."""

    model: str
    version: int
    build: str
    created_at: str


class VersionExistsError(RegistryError):
    """The (model, version) pair is already published; versions are immutable."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _state(row: Sequence[Any] | None) -> ChannelState | None:
    if row is None:
        return None
    _id, channel, version, percent, base, created = row
    return ChannelState(channel, version, percent, base, created)


class Database(ABC):
    """The registry's metadata operations; subclasses provide only connections and dialect."""

    id_column: str = ""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Run]:
        """Yield a ``run(sql, params)`` function; commit when the block ends, roll back on error."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def reading(self) -> AbstractContextManager[Run]:
        """Like :meth:`transaction`, for statements that only read (default: a transaction)."""
        return self.transaction()

    def _is_unique_violation(self, exc: Exception) -> bool:
        return False

    def create_schema(self) -> None:
        """Create the tables if absent (idempotent; run on every open)."""
        with self.transaction() as run:
            for statement in SCHEMA:
                run(statement.format(id_column=self.id_column), ())

    # -- versions ---------------------------------------------------------------------------------

    def insert_version(
        self, model: str, version: int | None, build: str, channel: str | None = None,
        first_channel: str | None = None,
    ) -> tuple[int, str | None]:
        """Record a version (the next number when ``version`` is None) and, if asked, point
        ``channel`` at it for everyone — all in one transaction. With no ``channel``, the model's
        first version goes to ``first_channel`` (so a first publish is served at once). Return the
        version number and the channel pointed at it (None when none)."""
        try:
            with self.transaction() as run:
                if channel is None and first_channel is not None:
                    first = run("SELECT 1 FROM versions WHERE model = ? LIMIT 1", (model,)).fetchone() is None
                    channel = first_channel if first else None
                if version is None:
                    row = run(
                        "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE model = ?",
                        (model,),
                    ).fetchone()
                    version = int(row[0])
                elif self._version_exists(run, model, version):
                    raise VersionExistsError(
                        f"{model} version {version} already exists; versions are immutable, "
                        "publish without --version to get the next number"
                    )
                self._record_version(run, model, version, build)
                if channel is not None:
                    self._append_event(run, model, channel, version, 100, None)
        except Exception as exc:
            if self._is_unique_violation(exc):
                raise VersionExistsError(
                    f"{model} version {version} was published concurrently; publish again"
                ) from None
            raise
        return version, channel

    def _version_exists(self, run: Run, model: str, version: int) -> bool:
        query = "SELECT 1 FROM versions WHERE model = ? AND version = ?"
        return run(query, (model, version)).fetchone() is not None

    def _record_version(self, run: Run, model: str, version: int, build: str) -> None:
        run(
            "INSERT INTO versions (model, version, build, created_at) VALUES (?, ?, ?, ?)",
            (model, version, build, _now()),
        )

    def get_version(self, model: str, version: int) -> VersionRow:
        """Given a model and version, return its row or raise NotFoundError."""
        with self.reading() as run:
            row = run(
                "SELECT model, version, build, created_at FROM versions "
                "WHERE model = ? AND version = ?",
                (model, version),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"model {model!r} has no version {version}")
        return VersionRow(*row)

    def list_versions(self, model: str | None = None) -> list[VersionRow]:
        """Return every version (of one model, when given), ordered by model then version."""
        query = "SELECT model, version, build, created_at FROM versions"
        params: tuple[Any, ...] = ()
        if model is not None:
            query, params = query + " WHERE model = ?", (model,)
        with self.reading() as run:
            rows = run(query + " ORDER BY model, version", params).fetchall()
        return [VersionRow(*row) for row in rows]

    def delete_version(self, model: str, version: int) -> None:
        """Delete a version no channel serves; raise NotFoundError or RegistryError otherwise."""
        with self.transaction() as run:
            if not self._version_exists(run, model, version):
                raise NotFoundError(f"model {model!r} has no version {version}")
            for state in self._current_states(run, model):
                if version in (state.version, state.base_version):
                    raise RegistryError(
                        f"{model} version {version} is served by channel {state.channel!r}; "
                        "promote or roll back that channel first"
                    )
            run("DELETE FROM versions WHERE model = ? AND version = ?", (model, version))
            run(
                "DELETE FROM channel_events WHERE model = ? AND (version = ? OR base_version = ?)",
                (model, version, version),
            )

    # -- channels ---------------------------------------------------------------------------------

    def channel(self, model: str, channel: str) -> ChannelState | None:
        """Return what ``channel`` of ``model`` serves now, or None when it was never set."""
        with self.reading() as run:
            return _state(run(_CURRENT, (model, channel)).fetchone())

    def channels(self, model: str) -> list[ChannelState]:
        """Return the current state of every channel of ``model``, by channel name."""
        with self.reading() as run:
            return self._current_states(run, model)

    def _current_states(self, run: Run, model: str) -> list[ChannelState]:
        names = run(
            "SELECT DISTINCT channel FROM channel_events WHERE model = ? ORDER BY channel", (model,)
        ).fetchall()
        states = (_state(run(_CURRENT, (model, name)).fetchone()) for (name,) in names)
        return [state for state in states if state is not None]

    def set_channel(self, model: str, channel: str, version: int, percent: int) -> ChannelState:
        """Point ``channel`` at ``version`` for ``percent`` % of clients; the others keep the
        version the channel fully served before. Return the new state."""
        with self.transaction() as run:
            if not self._version_exists(run, model, version):
                raise NotFoundError(f"model {model!r} has no version {version}")
            base = None
            if percent < 100:
                current = _state(run(_CURRENT, (model, channel)).fetchone())
                base = _full_version(current)
                if base is None:
                    raise RegistryError(
                        f"channel {channel!r} of {model} serves nothing yet, so a {percent}% "
                        "rollout has no version for the other clients; promote at 100 first"
                    )
                if base == version:
                    base, percent = None, 100
            self._append_event(run, model, channel, version, percent, base)
            return _state(run(_CURRENT, (model, channel)).fetchone())

    def rollback_channel(self, model: str, channel: str) -> ChannelState:
        """Undo the channel's last promotion; return the state it is back to."""
        with self.transaction() as run:
            current = run(_CURRENT, (model, channel)).fetchone()
            if current is None:
                raise NotFoundError(f"model {model!r} has no channel {channel!r}")
            run("UPDATE channel_events SET rolled_back = 1 WHERE id = ?", (current[0],))
            previous = _state(run(_CURRENT, (model, channel)).fetchone())
            if previous is None:
                raise RegistryError(
                    f"channel {channel!r} of {model} has no earlier version to roll back to"
                )
            return previous

    def _append_event(
        self, run: Run, model: str, channel: str, version: int, percent: int, base: int | None
    ) -> None:
        run(
            "INSERT INTO channel_events (model, channel, version, percent, base_version, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (model, channel, version, percent, base, _now()),
        )


def _full_version(state: ChannelState | None) -> int | None:
    """The version every client of a channel gets outside a canary: the base during a rollout."""
    if state is None:
        return None
    return state.version if state.percent >= 100 else state.base_version


class SQLiteDatabase(Database):
    """One WAL-mode SQLite file: readers never block the writer, a killed writer leaves nothing.

    A connection per write transaction keeps writes thread-safe under Starlette's thread pool.
    Reads use one kept read-only connection per thread (:meth:`reading`): with a connection always
    open, SQLite keeps its ``-wal``/``-shm`` files instead of deleting them when the last
    connection closes and recreating them on the next open — which fails on a full disk, and made
    every manifest a 500 there (issue 17). Reads also never queue behind a writer's lock."""

    id_column = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        self.create_schema()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._reader()  # this one stays open for the registry's life, keeping -wal/-shm

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def reading(self) -> Iterator[Run]:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            yield conn.execute
        finally:
            conn.execute("COMMIT")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Run]:
        conn = self._connect()
        try:
            with sqlite_write(conn):
                yield conn.execute
        finally:
            conn.close()

    def _is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def close(self) -> None:
        """Close the kept read connections (write connections live for one transaction)."""
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()


class PostgresDatabase(Database):
    """PostgreSQL through a psycopg 3 connection pool, for registries shared by several servers."""

    id_column = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

    def __init__(self, url: str, *, max_size: int = 8, timeout_s: float = 10.0) -> None:
        import psycopg

        self._psycopg = psycopg
        self.pool = open_pool(url, max_size=max_size, timeout_s=timeout_s)
        self.create_schema()

    @contextmanager
    def transaction(self) -> Iterator[Run]:
        with self.pool.connection() as conn, conn.transaction():

            def run(sql: str, params: Sequence[Any]) -> Any:
                return conn.execute(sql.replace("?", "%s"), params)

            yield run

    def _is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, self._psycopg.errors.UniqueViolation)

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()


def open_database(settings: Settings) -> Database:
    """Given settings, return the PostgreSQL database when ``database_url`` is set, else the
    SQLite file in the data dir (the choice :func:`browserml.database.database_target` makes for
    every store)."""
    target = database_target(settings)
    if target.is_postgres:
        assert target.url is not None
        return PostgresDatabase(target.url)
    return SQLiteDatabase(settings.database_path)
