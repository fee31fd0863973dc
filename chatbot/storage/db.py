"""Open a peewee database from a URL.

Accepted URLs (the forms of ``playhouse.db_url``)::

    sqlite:///relative/path/chatbot.db
    sqlite:////absolute/path/chatbot.db
    postgresql://user[:password]@host[:port]/dbname

The scheme may be written in any case. Query parameters of a PostgreSQL URL are
libpq connection options and go to the driver unchanged, for example
``postgresql://postgres@127.0.0.1/chatbot?options=-c%20search_path%3Dtenant``; an
SQLite URL takes none, since the server sets its connection options itself.

Both kinds are pooled: the store reads on executor threads and writes on a
thread of its own (or keeps one connection on the server's event loop, see
``writer.py``), and each thread borrows a connection for the length of one read
or one transaction instead of keeping one per thread forever.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

import peewee
from playhouse.db_url import parse
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from chatbot.errors import ConfigError, not_a_folder

# Enough for the executor threads of a busy server plus the writer; a thread
# that finds the pool empty waits this many seconds before giving up.
POOL_SIZE = 32
POOL_WAIT_SECONDS = 10
#: Seconds libpq may take to connect, unless the URL gives its own connect_timeout.
CONNECT_TIMEOUT = 10

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
    if check_database_url(url) == "sqlite":
        return _sqlite(url, sqlite_checkpoints)
    return _postgresql(url)


def check_database_url(url: str) -> str:
    """The kind of database ``url`` names, "sqlite" or "postgresql"; a ConfigError if it cannot work.

    Nothing is connected to: this runs before a server starts (or forks its workers), so
    that a URL that cannot work is reported once, as a message.
    """
    try:
        parsed = urlparse(url)
    except ValueError as error:  # e.g. an unclosed "[" around an IPv6 address
        reason = str(error)[:1].lower() + str(error)[1:]
        raise ConfigError(f"db: database url '{masked_url(url)}' cannot be parsed: {reason}") from None
    try:
        parsed.port  # checked only when read
    except ValueError:
        raise ConfigError(f"db: database url '{masked_url(url)}' has an invalid port "
                          "(expected a number from 0 to 65535)") from None
    if parsed.scheme == "sqlite":
        if parsed.netloc:
            raise ConfigError(f"db: sqlite url '{masked_url(url)}' has a host "
                              "(a file path takes three slashes: sqlite:///PATH)")
        path = parse(url)["database"]
        if path.endswith("/") or Path(path).is_dir():
            raise ConfigError(f"db: sqlite url '{url}' names a folder, not a file "
                              f"(e.g. sqlite:///{path.rstrip('/') or '.'}/chatbot.db)")
        if path == ":memory:":
            raise ConfigError(f"db: sqlite url '{url}' names no file "
                              "(an in-memory database is not shared between connections; use sqlite:///PATH)")
        if parsed.query:
            raise ConfigError(f"db: sqlite url '{url}' takes no query parameters, got '{parsed.query}' "
                              "(the server sets the connection options itself)")
        return "sqlite"
    if parsed.scheme in ("postgresql", "postgres"):
        name, params = _postgresql_params(url)
        if not name:
            raise ConfigError(f"db: postgresql url '{masked_url(url)}' names no database")
        try:
            import psycopg2.extensions
        except ImportError:
            raise ConfigError("db: postgresql needs the psycopg2 driver, which is not installed: "
                              "pip install -e '.[postgres]' in the project's folder "
                              "(or pip install psycopg2-binary)") from None
        options = dict(parse_qsl(parsed.query, keep_blank_values=True))
        if {"dbname", "database"} & options.keys():
            raise ConfigError(f"db: postgresql url '{masked_url(url)}' names its database in a query "
                              "parameter (it goes in the path: postgresql://USER@HOST:PORT/DB)")
        try:
            # libpq's own check of the option names, without connecting.
            psycopg2.extensions.parse_dsn(psycopg2.extensions.make_dsn(**options))
        except psycopg2.ProgrammingError as error:
            reason = str(error).strip().removeprefix("invalid dsn: ")
            raise ConfigError(f"db: postgresql url '{masked_url(url)}': {reason}") from None
        return "postgresql"
    raise ConfigError(
        f"db: unsupported database url '{masked_url(url)}' "
        "(expected sqlite:///PATH or postgresql://...)"
    )


def masked_url(url: str) -> str:
    """The URL with its password hidden, fit for messages and logs."""
    try:
        parsed = urlparse(url)
    except ValueError:  # not a URL that parses: hide whatever stands between "user:" and "@"
        return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", url)
    # libpq also takes the password as a query parameter (?password=…).
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parsed.query)
    if not parsed.password and query == parsed.query:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1) if parsed.password else parsed.netloc
    return parsed._replace(netloc=netloc, query=query).geturl()


def _sqlite(url: str, checkpoints: bool) -> peewee.Database:
    path = parse(url)["database"]
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"db: cannot create the directory of '{path}': {not_a_folder(error, Path(path).parent)}") \
            from error
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
    )


def _postgresql(url: str) -> peewee.Database:
    name, params = _postgresql_params(url)
    database = PooledPostgresqlDatabase(name, max_connections=POOL_SIZE, timeout=POOL_WAIT_SECONDS)
    # Straight into what reaches psycopg2.connect(): passed to the constructor, some names
    # (timeout, encoding, isolation_level...) would be taken by peewee instead.
    database.connect_params.update(params)
    return database


def _postgresql_params(url: str) -> tuple[str, dict]:
    """The database name and the other psycopg2.connect() arguments of a postgresql:// URL."""
    # As libpq reads a URL: a user, password or database name may be percent-encoded
    # (`p%40ss` for `p@ss`), and reaches the driver decoded.
    params = parse(url, unquote_password=True, unquote_user=True)
    name = unquote(params.pop("database"))
    # As written: playhouse turns "1" into 1 and "true" into True.
    params.update(parse_qsl(urlparse(url).query, keep_blank_values=True))
    # libpq waits for a server that accepts and never answers as long as TCP lets it: a start, or
    # a connection taken for a write, would hang with it. A timeout given in the URL, in libpq's
    # environment or in a service file wins (a value passed here would win over the last two).
    if not ({"connect_timeout", "service"} & params.keys() or {"PGCONNECT_TIMEOUT", "PGSERVICE"} & os.environ.keys()):
        params["connect_timeout"] = str(CONNECT_TIMEOUT)
    return name, params


def is_postgresql(url: str) -> bool:
    return url.split(":", 1)[0].lower() in ("postgresql", "postgres")


def postgresql_connect_params(url: str) -> dict:
    """psycopg2.connect() arguments for a postgresql:// URL (for a LISTEN connection of its own)."""
    name, params = _postgresql_params(url)
    return {**params, "dbname": name}
