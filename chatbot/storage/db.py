"""Open a peewee database from a URL.

Accepted URLs (the forms of ``playhouse.db_url``)::

    sqlite:///relative/path/chatbot.db
    sqlite:////absolute/path/chatbot.db
    postgresql://user[:password]@host[:port]/dbname

Query parameters go to the driver unchanged, for example
``postgresql://postgres@127.0.0.1/chatbot?options=-c%20search_path%3Dtenant``.

Both kinds are pooled: the store reads on executor threads and writes on a
thread of its own (or keeps one connection on the server's event loop, see
``writer.py``), and each thread borrows a connection for the length of one read
or one transaction instead of keeping one per thread forever.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import peewee
from playhouse.db_url import parse
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from chatbot.errors import ConfigError

# Enough for the executor threads of a busy server plus the writer; a thread
# that finds the pool empty waits this many seconds before giving up.
POOL_SIZE = 32
POOL_WAIT_SECONDS = 10

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    # A reply is sent only after its state change is committed, and the
    # change must survive the server being killed. In WAL mode a commit
    # with synchronous=NORMAL has written the transaction into the WAL file
    # (the OS page cache), which outlives a killed or crashed process; only an
    # operating-system crash or power loss can drop the last transactions.
    # FULL would add an fsync per commit for that last case only.
    "synchronous": "normal",
    "busy_timeout": 5000,
    "foreign_keys": 1,
}


def open_database(url: str, *, sqlite_checkpoints: bool = True) -> peewee.Database:
    """Build the database object for ``url``; it connects on first use.

    ``sqlite_checkpoints=False`` stops SQLite connections from copying the WAL back into the
    database on their own after a commit (each such checkpoint ends in an fsync); the
    caller then runs ``PRAGMA wal_checkpoint`` itself, off its latency-critical thread.
    """
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        return _sqlite(url, sqlite_checkpoints)
    if scheme in ("postgresql", "postgres"):
        return _postgresql(url)
    raise ConfigError(
        f"db: unsupported database url '{masked_url(url)}' "
        "(expected sqlite:///PATH or postgresql://...)"
    )


def masked_url(url: str) -> str:
    """The URL with its password hidden, fit for messages and logs."""
    parsed = urlparse(url)
    if not parsed.password:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return parsed._replace(netloc=netloc).geturl()


def _sqlite(url: str, checkpoints: bool) -> peewee.Database:
    if urlparse(url).netloc:
        raise ConfigError(
            f"db: sqlite url '{masked_url(url)}' has a host (a file path takes three slashes: sqlite:///PATH)"
        )
    params = parse(url)
    path = params.pop("database")
    if path == ":memory:":
        raise ConfigError(
            f"db: sqlite url '{url}' names no file "
            "(an in-memory database is not shared between connections; use sqlite:///PATH)"
        )
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"db: cannot create the directory of '{path}': {error.strerror}") from error
    return PooledSqliteDatabase(
        path,
        pragmas=SQLITE_PRAGMAS if checkpoints else {**SQLITE_PRAGMAS, "wal_autocheckpoint": 0},
        # Take the write lock when a transaction begins, so a second writer
        # waits for busy_timeout instead of failing when it upgrades a read.
        lock_type="IMMEDIATE",
        # Pooled connections move between threads, one thread at a time.
        check_same_thread=False,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_SECONDS,
        **params,
    )


def _postgresql(url: str) -> peewee.Database:
    params = parse(url)
    name = params.pop("database")
    if not name:
        raise ConfigError(f"db: postgresql url '{masked_url(url)}' names no database")
    return PooledPostgresqlDatabase(
        name, max_connections=POOL_SIZE, timeout=POOL_WAIT_SECONDS, **params
    )


def is_postgresql(url: str) -> bool:
    return url.split(":", 1)[0] in ("postgresql", "postgres")


def postgresql_connect_params(url: str) -> dict:
    """psycopg2.connect() arguments for a postgresql:// URL (for a LISTEN connection of its own)."""
    params = parse(url)
    params["dbname"] = params.pop("database")
    return params
