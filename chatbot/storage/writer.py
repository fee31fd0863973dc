"""One thread that applies writes, many to a transaction (group commit).

Callers submit a function and get a ``concurrent.futures.Future``. The thread
takes everything queued at that moment, runs it in one transaction, commits,
and only then resolves the futures: a caller that waits for its future knows
the write is durable. While one transaction commits, the next writes queue up
and share the following one, so under load the cost of a commit is spread
over many writes instead of paid by each.

If a grouped transaction fails, its writes are retried one transaction each,
so one bad write fails alone and its neighbours still land. The thread never
dies of a failed write: every exception goes to the future of the write that
raised it.

Given an event loop, the writer runs its batches on that loop's thread instead
of a thread of its own: everything submitted while the loop handles one round
of events is committed by one callback at the start of the next round. That is
for SQLite, whose statements and commit (WAL, synchronous=NORMAL) are a few
microseconds of CPU each with nothing to wait for: on a second thread, every
statement would hand the GIL back and forth with the loop, and each hand-over
can wait for the interpreter's switch interval (5 ms) while the loop is busy.
A database across a network (PostgreSQL) keeps the thread, whose round trips
then overlap the loop's work.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Callable

import peewee
from playhouse.pool import MaxConnectionsExceeded

from chatbot.errors import StorageError, one_line
from chatbot.storage.records import WriteStats

MAX_BATCH = 256
#: On the loop, while another program holds SQLite's write lock: seconds between tries of the
#: waiting batch, and how long it may wait before its writes fail (SQLite's own busy_timeout).
BUSY_RETRY = 0.05
BUSY_WAIT = 5.0
#: Seconds a transaction may go without finishing a write before the database counts as having
#: stopped answering (a server or network that holds the connection open and says nothing): see
#: `stuck`. A big batch on a slow database still finishes a write every few milliseconds.
STUCK_AFTER = 10.0
#: Seconds between two looks at a writer that a stop waits for.
STOP_POLL = 0.1


@dataclass
class _Write:
    apply: Callable[[], Any] | None  # None marks a flush barrier
    label: str
    future: Future
    #: Applies several writes of one kind together, with their items, in the order given (see submit).
    apply_many: Callable[[list[Any]], list[Any]] | None = None
    item: Any = None


_STOP = None


class GroupCommitWriter:
    def __init__(self, database: peewee.Database, *, max_batch: int = MAX_BATCH,
                 loop: asyncio.AbstractEventLoop | None = None, check: Callable[[], None] | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"writer: max_batch must be at least 1, got {max_batch}")
        self._database = database
        self._max_batch = max_batch
        #: Called before each transaction; raises if the database cannot be trusted with it.
        self._check = check
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        # Guards the closed flag together with the queue, so nothing is
        # queued behind the stop marker where no one would run it.
        self._lock = threading.Lock()
        self._closed = False
        self._writes = self._transactions = self._failures = 0
        #: Whether the database itself failed the last write it was asked for (a full disk, a lost
        #: server), as opposed to a write refused for its own sake (a conflict, an unknown session).
        self.database_failing = False
        self._loop = loop
        #: When the transaction running now began or last finished a write (time.monotonic()),
        #: None between transactions.
        self._progress_at: float | None = None
        #: Whether a drain of the queue is scheduled on the loop (guarded by _lock).
        self._drain_due = False
        #: Held while a batch is taken and applied, so a drain on the loop and one by stop() never overlap.
        self._applying = threading.RLock()
        #: On the loop: a batch that found the database locked (its writes, whether it ended with
        #: the stop marker), tried again before anything queued behind it; and since when it waits.
        self._held: tuple[list[_Write], bool] | None = None
        self._busy_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="chatbot-storage-writer", daemon=True)
        #: Called where a batch was applied (the writer's thread or its loop) once the batch's futures
        #: are resolved; lets an event loop be woken once per batch instead of once per future.
        self.after_batch: Callable[[], None] | None = None

    def start(self) -> None:
        if self._loop is None:
            self._thread.start()

    def submit(self, apply: Callable[[], Any], label: str, *,
               many: tuple[Callable[[list[Any]], list[Any]], Any] | None = None) -> Future:
        """Run ``apply()`` in a transaction of the writer (on its thread, or on its loop).

        ``label`` names the write in error texts ("save_turn of session 'x'").
        ``many=(apply_many, item)``: writes queued one after another with the same
        ``apply_many`` may instead be applied by one ``apply_many([item, …])``, which returns
        their results (for instance one statement for them all instead of one each). If it
        raises, the batch is retried a write at a time with ``apply()``, as any failed batch is.
        """
        apply_many, item = many if many is not None else (None, None)
        return self._put(_Write(apply, label, Future(), apply_many, item))

    def barrier(self) -> Future:
        """A future resolved once every write submitted before it is done."""
        return self._put(_Write(None, "flush", Future()))

    def wait(self, future: Future, timeout: float | None = None) -> Any:
        """``future.result(timeout)``, also on the loop that runs the writes (which it drains first)."""
        if self._on_loop_thread():
            self._drain_all()
        return future.result(timeout)

    def stop(self, timeout: float | None = None) -> bool:
        """Finish the queued writes, then end the thread: wait `timeout` seconds for it, and longer
        while it still finishes writes (until it is `stuck`).

        False if the thread is still waiting for the database then: what it holds was never
        acknowledged, and as a daemon thread it does not hold up the program's exit."""
        with self._lock:
            stopping = not self._closed
            self._closed = True
            if stopping:
                self._queue.put(_STOP)
        if self._loop is None:
            if self._thread.is_alive():
                self._thread.join(timeout)
            # Past the timeout, a writer that still finishes writes is given the time to finish them.
            while self._thread.is_alive() and not self.stuck:
                self._thread.join(STOP_POLL)
            return not self._thread.is_alive()
        if stopping:
            self._drain_all()
        return True

    @property
    def stuck(self) -> bool:
        """Whether a transaction has gone more than STUCK_AFTER seconds without finishing a write
        (read from another thread: the writer's own may be the one waiting for the database)."""
        since = self._progress_at
        return since is not None and time.monotonic() - since > STUCK_AFTER

    def _progressed(self) -> None:
        self._progress_at = time.monotonic()

    @property
    def stats(self) -> WriteStats:
        return WriteStats(self._writes, self._transactions, self._failures)

    def _put(self, write: _Write) -> Future:
        with self._lock:
            if self._closed:
                raise StorageError("storage: the store is closed")
            self._queue.put(write)
            schedule = self._loop is not None and not self._drain_due
            self._drain_due = self._drain_due or schedule
        if schedule:
            if self._on_loop_thread():
                self._loop.call_soon(self._drain)
            else:
                self._loop.call_soon_threadsafe(self._drain)
        return write.future

    def _on_loop_thread(self) -> bool:
        if self._loop is None:
            return False
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:  # no loop runs on this thread
            return False

    def _run(self) -> None:
        while True:
            if self._process(self._queue.get()):
                return

    def _drain(self) -> None:
        """On the loop: commit what is queued (a batch at a time, yielding to the loop between batches)."""
        with self._lock:
            self._drain_due = False
        self._process_next()
        if self._held is not None:
            delay = BUSY_RETRY  # the database is locked: try again later, the loop serves on meanwhile
        elif not self._queue.empty():
            delay = 0.0
        else:
            return
        with self._lock:
            schedule = not self._drain_due
            self._drain_due = True
        if schedule:
            self._loop.call_later(delay, self._drain) if delay else self._loop.call_soon(self._drain)

    def _drain_all(self) -> None:
        while self._process_next() is False:
            if self._held is not None:
                time.sleep(BUSY_RETRY)

    def _process_next(self) -> bool | None:
        """Apply the next batch, if any; None when nothing was queued."""
        # Taken under the lock: a drain by stop() on another thread must not take later
        # writes and commit them before the loop commits the ones it took first.
        with self._applying:
            if self._held is not None:
                (live, stop), self._held = self._held, None
                return self._settle(live, stop)
            try:
                first = self._queue.get_nowait()
            except queue.Empty:
                return None
            return self._process(first)

    def _process(self, first: _Write | None) -> bool:
        """Apply `first` and what is queued behind it; return whether the batch ended with the stop marker."""
        with self._applying:
            batch = [first]
            while len(batch) < self._max_batch and batch[-1] is not _STOP:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # A caller may have cancelled its future while it waited.
            live = [w for w in batch if w is not _STOP and w.future.set_running_or_notify_cancel()]
            return self._settle(live, batch[-1] is _STOP)

    def _settle(self, live: list[_Write], stop: bool) -> bool:
        """Apply a batch's writes and resolve its futures, or hold it while the database is locked."""
        if not self._apply([w for w in live if w.apply is not None]):
            self._held = (live, stop)
            return False
        for write in live:
            if write.apply is None:
                write.future.set_result(None)
        if live and self.after_batch is not None:
            self.after_batch()
        return stop

    def _apply(self, writes: list[_Write]) -> bool:
        """Apply the writes; False if, on the loop, the database is locked and they should wait."""
        if not writes:
            return True
        try:
            results = self._transaction(writes)
        except Exception as error:  # delivered to the callers through their futures
            if self._should_wait(error):
                return False
            self._writes += len(writes)
            if len(writes) == 1:
                self._fail(writes[0], error)
                return True
            # One bad write must not fail its neighbours: retry each alone.
            for write in writes:
                try:
                    (result,) = self._transaction([write])
                except Exception as error:  # as above
                    self._fail(write, error)
                else:
                    write.future.set_result(result)
            return True
        self._busy_since = None
        self._writes += len(writes)
        for write, result in zip(writes, results):
            write.future.set_result(result)
        return True

    def _should_wait(self, error: Exception) -> bool:
        """Whether a batch that failed on `error` should be tried again later (see BUSY_WAIT)."""
        locked = isinstance(error, peewee.OperationalError) and "locked" in str(error)
        if not (locked and self._on_loop_thread()):
            self._busy_since = None
            return False
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        if now - self._busy_since < BUSY_WAIT:
            return True
        self._busy_since = None  # waited long enough: this batch's writes fail
        return False

    def _transaction(self, writes: list[_Write]) -> list[Any]:
        self._progress_at = time.monotonic()
        try:
            return self._run_transaction(writes)
        except peewee.OperationalError as error:
            original = _unmasked(error)
            if original is error:
                raise
            raise original from None
        finally:
            self._progress_at = None

    def _run_transaction(self, writes: list[_Write]) -> list[Any]:
        if self._check is not None:
            self._check()
        if self._on_loop_thread():
            # The loop keeps one connection: SQLite drops a connection's page cache whenever
            # another connection wrote since its last transaction, so a connection borrowed
            # from the pool per batch would read every page it touches again.
            if self._database.connect(reuse_if_open=True) and isinstance(self._database, peewee.SqliteDatabase):
                # SQLite's busy handler would sleep on the loop while another program holds the
                # write lock; the writer waits by trying again later instead (see _should_wait).
                self._database.execute_sql("PRAGMA busy_timeout = 0")
            with self._database.atomic():
                results = _apply_in_order(writes, self._progressed)
        else:
            # A connection from the pool per transaction: one that broke (a
            # restarted PostgreSQL) is dropped by the pool instead of failing
            # every later write.
            with self._database.connection_context(), self._database.atomic():
                results = _apply_in_order(writes, self._progressed)
        self._transactions += 1
        self.database_failing = False
        return results

    def _fail(self, write: _Write, error: Exception) -> None:
        self._failures += 1
        if isinstance(error, (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded)):
            self.database_failing = True
        if isinstance(error, (peewee.PeeweeException, MaxConnectionsExceeded)):
            wrapped = StorageError(f"storage: {write.label} failed: {one_line(error)}")
            wrapped.__cause__ = error
            error = wrapped
        write.future.set_exception(error)


def _unmasked(error: peewee.OperationalError) -> Exception:
    """The error that a failed rollback took the place of.

    SQLite rolls a transaction back itself when, for instance, the disk is full; peewee's own
    rollback then fails with "no transaction is active", and that error would be reported
    instead of "database or disk is full" (or "database is locked", which the writer waits out).
    """
    if "no transaction is active" not in str(error):
        return error
    cause = error.__context__
    while cause is not None and "no transaction is active" in str(cause):
        cause = cause.__cause__ or cause.__context__
    return cause if isinstance(cause, Exception) else error


def _apply_in_order(writes: list[_Write], progressed: Callable[[], None]) -> list[Any]:
    """Each write's result; a run of two or more writes with the same apply_many goes in one call.
    `progressed` is called after each call that finished."""
    results: list[Any] = []
    for apply_many, run in groupby(writes, key=lambda write: write.apply_many):
        run = list(run)
        if apply_many is not None and len(run) > 1:
            results.extend(apply_many([write.item for write in run]))
            progressed()
        else:
            for write in run:
                results.append(write.apply())
                progressed()
    return results
