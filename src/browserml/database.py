"""Which database BrowserML uses, and how to open a PostgreSQL pool: shared by every store.

``settings.database_url`` decides for the whole process: unset means a SQLite file in the data dir,
a ``postgresql://`` URL means PostgreSQL through a psycopg 3 connection pool. The registry and the
telemetry store both call :func:`database_target` and :func:`open_pool`, so the choice and its
error messages cannot drift between them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from .errors import DatabaseError

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from .settings import Settings


@dataclass(frozen=True)
class DatabaseTarget:
    """Either ``url`` (PostgreSQL) or ``sqlite_dir`` (the data dir holding SQLite files) is set."""

    url: str | None
    sqlite_dir: Path | None

    @property
    def is_postgres(self) -> bool:
        return self.url is not None


def redact(url: str) -> str:
    """Given a database URL, return it without its password, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def database_target(settings: Settings) -> DatabaseTarget:
    """Given settings, return PostgreSQL when ``database_url`` is set, else SQLite in the data dir;
    raise DatabaseError for a URL that is not ``postgresql://``."""
    url = settings.database_url
    if not url:
        return DatabaseTarget(None, Path(settings.data_dir))
    if not url.startswith(("postgresql://", "postgres://")):
        raise DatabaseError(
            f"BROWSERML_DATABASE_URL must start with postgresql:// (got {redact(url)!r}); "
            "unset it to use SQLite in the data dir"
        )
    return DatabaseTarget(url, None)


def open_pool(url: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 10.0) -> ConnectionPool:
    """Given a PostgreSQL URL, return an open psycopg pool, or raise DatabaseError (password
    redacted) when no connection comes within ``timeout_s``."""
    from psycopg_pool import ConnectionPool, PoolTimeout

    pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=False)
    try:
        pool.open(wait=True, timeout=timeout_s)
    except PoolTimeout:
        pool.close()
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {redact(url)} within {timeout_s:.0f} s; "
            "check BROWSERML_DATABASE_URL and that the server is running"
        ) from None
    return pool


@contextmanager
def sqlite_write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Given an autocommit SQLite connection, run the block in ``BEGIN IMMEDIATE`` (the write lock
    taken up front, so the transaction cannot fail half-way on a lock upgrade), commit on success
    and roll back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
