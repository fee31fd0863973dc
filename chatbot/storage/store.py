"""The store the session layer talks to.

Reads are plain synchronous methods on the caller's thread (run them in an
executor from the event loop). Writes go to one writer, on a thread of its own
or on the server's event loop, that groups them into transactions (see
``writer.py``); session writes return a
``concurrent.futures.Future`` that resolves once the write is committed, and
the rarer account and housekeeping writes wait for theirs and return the
result. Reads see committed writes only.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import Future
from itertools import groupby

import peewee

from chatbot.errors import StorageError, one_line
from chatbot.storage.db import masked_url, open_database
from chatbot.storage.migrations import migrate
from chatbot.storage.models import Models, bind_models
from chatbot.storage.records import HistoryRecord, SessionRecord, TurnWrite, UserRecord, WriteStats
from chatbot.storage.turnsql import TurnStatements
from chatbot.storage.writer import MAX_BATCH, GroupCommitWriter


#: Seconds between WAL checkpoints when the store checkpoints itself (see Checkpointer). Often:
#: every page a writer reads is looked up in the WAL's index first, which grows with the WAL
#: (profiled under load: commits took 11% of the event loop at 1 s, 3.5% at 0.1 s).
CHECKPOINT_INTERVAL = 0.1


#: Expired sessions deleted per transaction (see Store.delete_expired).
EXPIRY_CHUNK = 20


class UsernameTaken(StorageError):
    def __init__(self, username: str) -> None:
        super().__init__(username)
        self.username = username

    def __str__(self) -> str:
        return f"storage: username '{self.username}' is taken"


class SessionConflict(StorageError):
    """Another process changed the session first, or already processed the client's message."""


class SessionGone(StorageError):
    """The session is no longer stored (it expired and was deleted)."""


def _same_file_check(path: str):
    """A check that the SQLite file at `path` is still the one opened now.

    A connection keeps writing to a file deleted under it, and every commit would succeed
    into a file no one will open again: turns acknowledged, then lost.
    """
    opened = os.stat(path)

    def check() -> None:
        try:
            now = os.stat(path)
        except FileNotFoundError:
            raise peewee.OperationalError(f"the database file '{path}' was deleted while the server ran") from None
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            raise peewee.OperationalError(f"the database file '{path}' was replaced while the server ran")

    return check


class Checkpointer:
    """Copies SQLite's WAL back into the database file now and then, on a thread of its own.

    A commit that triggers SQLite's automatic checkpoint pays for it, fsyncs included
    (milliseconds); when commits run on the event loop, the store turns that off and
    this thread checkpoints instead. A passive checkpoint never blocks a writer.
    """

    def __init__(self, database: peewee.SqliteDatabase, interval: float) -> None:
        self._database = database
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chatbot-checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self.checkpoint()  # leave a short WAL behind

    def checkpoint(self) -> None:
        try:
            with self._database.connection_context():
                self._database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:  # a busy database, an exhausted pool: the next round tries again
            pass  # (the thread must not die: nothing else checkpoints, and the WAL would only grow)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            self.checkpoint()


class Store:
    """Sessions, their history and user accounts in one database.

    Per session, the history of the last ``history_limit`` seqs and the last
    ``processed_limit`` client message ids are kept; older ones are dropped
    by the turn that passes the limit. Writes are applied in the order they
    were submitted, so a turn may be submitted before its session's
    create_session has resolved.
    ``max_batch`` caps how many writes share one transaction.
    ``notify_channel`` is where turns' ``notify`` payloads are published.
    """

    def __init__(
        self,
        url: str,
        *,
        history_limit: int = 500,
        processed_limit: int = 200,
        max_batch: int = MAX_BATCH,
        notify_channel: str = "chatbot_turns",
        trim_every: int = 50,
    ) -> None:
        limits = {"history_limit": history_limit, "processed_limit": processed_limit, "max_batch": max_batch,
                  "trim_every": trim_every}
        for name, value in limits.items():
            if value < 1:
                raise ValueError(f"store: {name} must be at least 1, got {value}")
        self._url = url
        self._history_limit = history_limit
        self._processed_limit = processed_limit
        self._max_batch = max_batch
        self._notify_channel = notify_channel
        self._trim_every = trim_every
        self._database: peewee.Database | None = None
        self._models: Models | None = None
        self._writer: GroupCommitWriter | None = None
        self._checkpointer: Checkpointer | None = None
        self._turn_sql: TurnStatements | None = None
        self._user_ids: dict[str, int] = {}

    # lifecycle

    def open(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Connect, bring the schema up to date and start the writer.

        With ``loop``, writes are committed by callbacks on that loop's thread instead of a
        writer thread (see ``writer.py``).
        """
        if self._writer is not None:
            raise StorageError("storage: the store is already open")
        database = open_database(self._url, sqlite_checkpoints=loop is None)
        models = bind_models(database)
        try:
            migrate(database, models)
        except Exception as error:
            database.close_all()
            if isinstance(error, peewee.PeeweeException):
                raise StorageError(f"storage: cannot open '{masked_url(self._url)}': {one_line(error)}") from error
            raise
        self._database, self._models = database, models
        self._turn_sql = TurnStatements.build(database, models)
        self._user_ids: dict[str, int] = {}
        check = _same_file_check(database.database) if isinstance(database, peewee.SqliteDatabase) else None
        self._writer = GroupCommitWriter(database, max_batch=self._max_batch, loop=loop, check=check)
        self._writer.start()
        if loop is not None and isinstance(database, peewee.SqliteDatabase):
            self._checkpointer = Checkpointer(database, CHECKPOINT_INTERVAL)
            self._checkpointer.start()

    def close(self, timeout: float | None = None) -> bool:
        """Apply the pending writes, stop the writer and close every connection: wait `timeout`
        seconds for the writer, and longer while it still finishes writes. False if it is waiting
        for a database that stopped answering: its connection is left to the program's exit."""
        if self._writer is None:
            return True
        stopped = True
        try:
            stopped = self._writer.stop(timeout)
        finally:
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            if stopped:  # closing the connection the writer waits on would wait with it
                self._database.close_all()
            self._writer = self._database = self._models = None
        return stopped

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every write submitted so far is committed (or failed)."""
        writer = self._open_writer()
        writer.wait(writer.barrier(), timeout)

    def probe(self) -> Future:
        """An empty transaction: once the database takes one again, `database_failing` is False."""
        return self._submit(lambda: None, "probe")

    @property
    def database_failing(self) -> bool:
        """Whether the database failed the last write it was given (see GroupCommitWriter)."""
        return self._writer is not None and self._writer.database_failing

    @property
    def database_stuck(self) -> bool:
        """Whether a transaction has gone writer.STUCK_AFTER seconds without finishing a write."""
        writer = self._writer
        return writer is not None and writer.stuck

    @property
    def write_stats(self) -> WriteStats:
        return self._open_writer().stats

    # sessions

    def create_session(self, rec: SessionRecord) -> Future:
        return self._submit(lambda: self._insert_session(rec), f"create_session of session '{rec.id}'")

    def after_each_batch(self, callback) -> None:
        """Have the writer call `callback()` after each batch of writes is resolved (on the thread that ran it)."""
        self._open_writer().after_batch = callback

    def save_turn(self, turn: TurnWrite) -> Future:
        """Update the session, add its history and record the client message id, atomically."""
        # SQLite: the turns of one batch share their statements (see _apply_turns).
        many = (self._apply_turns, turn) if isinstance(self._database, peewee.SqliteDatabase) else None
        return self._open_writer().submit(lambda: self._apply_turn(turn), f"save_turn of session '{turn.session_id}'",
                                          many=many)

    def load_session(self, session_id: str) -> SessionRecord | None:
        return self._one_session(self._models_open().Session.id == session_id)

    def find_session_by_token(self, token_hash: str) -> SessionRecord | None:
        return self._one_session(self._models_open().Session.token_hash == token_hash)

    def history(
        self, session_id: str, *, after_seq: int = 0, before_seq: int | None = None, limit: int = 500
    ) -> list[HistoryRecord]:
        """Entries with after_seq < seq < before_seq, in seq order.

        Without ``before_seq`` these are the first ``limit`` after ``after_seq``
        (catching up after a reconnect); with it, the last ``limit`` before it
        (paging back through older history).
        """
        entry = self._models_open().HistoryEntry
        query = entry.select(entry.seq, entry.role, entry.text, entry.meta, entry.created_at).where(
            entry.session == session_id, entry.seq > after_seq
        )
        if before_seq is None:
            query = query.order_by(entry.seq).limit(limit)
        else:
            query = query.where(entry.seq < before_seq).order_by(entry.seq.desc()).limit(limit)
        with self._database.connection_context():
            rows = list(query.tuples())
        if before_seq is not None:
            rows.reverse()
        return [HistoryRecord(*row) for row in rows]

    def processed(self, session_id: str, client_id: str) -> tuple[int, int] | None:
        """The seq range of the replies to ``client_id``, if it was processed."""
        done = self._models_open().ProcessedMessage
        query = done.select(done.first_seq, done.last_seq).where(
            done.session == session_id, done.client_id == client_id
        )
        with self._database.connection_context():
            return query.tuples().first()

    def recent_processed(self, session_id: str) -> list[tuple[str, int, int]]:
        """Every processed client id still kept for the session, oldest first: (id, first_seq, last_seq)."""
        done = self._models_open().ProcessedMessage
        query = (done.select(done.client_id, done.first_seq, done.last_seq)
                 .where(done.session == session_id).order_by(done.id))
        with self._database.connection_context():
            return list(query.tuples())

    def delete_expired(self, idle_before: float, created_before: float) -> int:
        """Delete sessions idle since ``idle_before`` or created before ``created_before``.

        A few sessions per transaction (their history and ids go by cascade): the writes of
        live turns, which may be committed on the server's event loop, wait for one short
        transaction at a time instead of one that deletes everything expired.
        """
        session = self._models_open().Session
        old = (session.updated_at < idle_before) | (session.created_at < created_before)

        def delete_some() -> int:
            chosen = session.select(session.id).where(old).limit(EXPIRY_CHUNK)
            return session.delete().where(session.id.in_(chosen)).execute()

        deleted = 0
        while True:
            some = self._submit_and_wait(delete_some, "delete_expired")
            deleted += some
            if some < EXPIRY_CHUNK:
                return deleted

    def count_sessions(self) -> int:
        session = self._models_open().Session
        with self._database.connection_context():
            return session.select().count()

    # users

    def find_user(self, username_key: str) -> UserRecord | None:
        user = self._models_open().User
        query = user.select(user.id, user.username, user.username_key, user.password_hash, user.created_at)
        with self._database.connection_context():
            row = query.where(user.username_key == username_key).tuples().first()
        return None if row is None else UserRecord(*row)

    def create_user(self, username: str, username_key: str, password_hash: str) -> UserRecord:
        """Add an account; raise UsernameTaken if ``username_key`` is in use."""
        user = self._models_open().User
        now = time.time()

        def insert() -> int:
            try:
                return user.insert(
                    username=username, username_key=username_key, password_hash=password_hash, created_at=now
                ).execute()
            except peewee.IntegrityError as error:
                raise UsernameTaken(username) from error

        user_id = self._submit_and_wait(insert, f"create_user '{username}'")
        return UserRecord(user_id, username, username_key, password_hash, now)

    def update_password_hash(self, user_id: int, password_hash: str) -> None:
        user = self._models_open().User

        def update() -> None:
            if user.update(password_hash=password_hash).where(user.id == user_id).execute() != 1:
                raise StorageError(f"storage: unknown user id {user_id}")

        self._submit_and_wait(update, f"update_password_hash of user {user_id}")

    # writer side: these run inside the writer's transaction, one batch at a time

    def _insert_session(self, rec: SessionRecord) -> None:
        self._models.Session.insert(
            id=rec.id,
            token_hash=rec.token_hash,
            flow=rec.flow,
            state=rec.state,
            slots=rec.slots,
            lang=rec.lang,
            user=self._user_id(rec.user),
            flow_version=rec.flow_version,
            seq=rec.seq,
            created_at=rec.created_at,
            updated_at=rec.updated_at,
            conversation_from=rec.conversation_from,
        ).execute()

    def _apply_turn(self, turn: TurnWrite) -> None:
        # The statements run on the driver's cursor; peewee's wrapper turns its errors into peewee's.
        with peewee.__exception_wrapper__:
            self._apply_turn_statements(turn)

    def _apply_turn_statements(self, turn: TurnWrite) -> None:
        sql, cursor = self._turn_sql, self._database.cursor()
        if sql.update_session(cursor, turn, self._user_id(turn.user)) != 1:
            session = self._models.Session
            if turn.expected_seq is not None and session.select().where(session.id == turn.session_id).exists():
                raise SessionConflict(
                    f"storage: session '{turn.session_id}' is no longer at seq {turn.expected_seq}"
                )
            raise SessionGone(f"storage: unknown session '{turn.session_id}'")
        if turn.entries:
            sql.add_entries(cursor, turn)
        if turn.client_id is not None:
            try:
                with peewee.__exception_wrapper__:
                    sql.add_processed(cursor, turn)
            except peewee.IntegrityError as error:
                raise SessionConflict(
                    f"storage: message '{turn.client_id}' of session '{turn.session_id}' was already processed"
                ) from error
        self._trim(cursor, turn)

        if turn.notify is not None:
            if not isinstance(self._database, peewee.PostgresqlDatabase):
                raise StorageError("storage: turn notifications need postgresql")
            self._database.execute_sql("SELECT pg_notify(%s, %s)", (self._notify_channel, turn.notify))

    def _apply_turns(self, turns: list[TurnWrite]) -> list[None]:
        """The statements of several turns, each kind run once for them all (SQLite).

        A turn that would fail alone (a conflict, a session gone, an id already processed) fails
        the call: the writer then applies the turns one by one, and that turn gets its error.
        """
        if any(turn.notify is not None for turn in turns):
            raise StorageError("storage: turn notifications need postgresql")
        sql = self._turn_sql
        with peewee.__exception_wrapper__:
            cursor = self._database.cursor()
            for _, run in groupby(turns, key=sql.update_kind):  # each run shares one UPDATE statement
                run = list(run)
                changed = sql.update_sessions(cursor, run, [self._user_id(turn.user) for turn in run])
                if changed != len(run):
                    raise StorageError(f"storage: {len(run)} turns changed {changed} sessions")
            entries = [row for turn in turns for row in sql.entry_rows(turn)]
            if entries:
                cursor.executemany(sql.insert_entry, entries)
            processed = [sql.processed_row(turn) for turn in turns if turn.client_id is not None]
            if processed:
                cursor.executemany(sql.insert_processed, processed)
            for turn in turns:
                self._trim(cursor, turn)
        return [None] * len(turns)

    def _trim(self, cursor, turn: TurnWrite) -> None:
        if turn.forget_before is not None:
            self._turn_sql.trim_history(cursor, turn.session_id, turn.forget_before)
        # Trimming is a DELETE a turn need not pay each time: it runs when the seq passes a
        # multiple of trim_every, so a session holds up to trim_every entries (and ids) more.
        previous_seq = turn.seq - len(turn.entries)
        if turn.seq // self._trim_every == previous_seq // self._trim_every:
            return
        # Seqs are handed out one by one, so the newest history_limit entries
        # are those above turn.seq - history_limit.
        oldest_kept = turn.seq - self._history_limit + 1
        if oldest_kept > 1:
            self._turn_sql.trim_history(cursor, turn.session_id, oldest_kept)
        # Each processed message took at least one seq of its own, so a
        # session cannot have more of them than turn.seq.
        if turn.client_id is not None and turn.seq > self._processed_limit:
            self._turn_sql.trim_processed_ids(cursor, turn.session_id, self._processed_limit)

    def _user_id(self, username: str | None) -> int | None:
        """The id of a user (remembered: users are never renamed, and only the writer asks)."""
        if username is None:
            return None
        user_id = self._user_ids.get(username)
        if user_id is None:
            user = self._models.User
            user_id = user.select(user.id).where(user.username == username).scalar()
            if user_id is None:
                raise StorageError(f"storage: unknown user '{username}'")
            self._user_ids[username] = user_id
        return user_id

    # plumbing

    def _one_session(self, condition: peewee.Expression) -> SessionRecord | None:
        session, user = self._models.Session, self._models.User
        query = (
            session.select(
                session.id, session.token_hash, session.flow, session.state, session.slots, session.lang,
                user.username, session.flow_version, session.seq, session.created_at, session.updated_at,
                session.conversation_from,
            )
            .join(user, peewee.JOIN.LEFT_OUTER)
            .where(condition)
        )
        with self._database.connection_context():
            row = query.tuples().first()
        return None if row is None else SessionRecord(*row)

    def _submit(self, apply, label: str) -> Future:
        return self._open_writer().submit(apply, label)

    def _submit_and_wait(self, apply, label: str):
        writer = self._open_writer()
        return writer.wait(writer.submit(apply, label))

    def _open_writer(self) -> GroupCommitWriter:
        if self._writer is None:
            raise StorageError("storage: the store is not open")
        return self._writer

    def _models_open(self) -> Models:
        if self._models is None:
            raise StorageError("storage: the store is not open")
        return self._models
