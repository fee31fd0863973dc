"""Writing log records off the caller's thread, in batches, to a file shared by processes.

The caller's thread (a server's event loop) only makes each record's JSON line and queues
it (an event of `chatbot.logs.EventLog` is queued as an :class:`EventRecord`, without the
cost of a `logging.LogRecord`); a writer thread takes what is queued in batches and appends
each batch to the file under one acquisition of the file lock that lets several processes
share it (`concurrent_log_handler`). `chatbot.logs.setup_logging` puts this together.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import sys
import threading
import time
from logging.handlers import QueueHandler
from typing import Callable

from concurrent_log_handler import ConcurrentRotatingFileHandler

from chatbot.errors import not_a_folder

#: Seconds between two reports of a log file that cannot be written.
UNWRITABLE_REPORT_INTERVAL = 60.0
#: The record attribute carrying its JSON line, made when the record was queued.
JSON_LINE = "_json_line"
#: The record attribute carrying the fields of an event (see `chatbot.logs.EventLog`): one
#: attribute rather than separate `extra=` keys, so a field may be called `name` or `args`,
#: which logging reserves.
EVENT_FIELDS = "event_fields"


class EventRecord:
    """An event queued with its JSON line made: what the file needs, in a fraction of a LogRecord.

    Handlers other than the file (the console) get a LogRecord made from it on the writer thread.
    """

    __slots__ = ("logger_name", "levelno", "event", "fields", "created", "line")

    def __init__(self, logger_name: str, levelno: int, event: str, fields: dict,
                 created: float, line: str | None) -> None:
        self.logger_name = logger_name
        self.levelno = levelno
        self.event = event
        self.fields = fields
        self.created = created
        self.line = line

    def to_record(self) -> logging.LogRecord:
        record = logging.LogRecord(self.logger_name, self.levelno, "", 0, self.event, (), None)
        record.created = self.created
        record.msecs = (self.created - int(self.created)) * 1000
        record.__dict__[EVENT_FIELDS] = self.fields
        return record


class BatchFileHandler(ConcurrentRotatingFileHandler):
    """Writes a batch of records under one acquisition of the shared file lock.

    The lock, the stale-file check and the size check cost more than a JSON line; taken
    once per batch they are paid once. Files rotate exactly where writing one record
    at a time would have rotated them.
    """

    _unwritable_reported_at = -math.inf

    def emit_batch(self, records: list[logging.LogRecord | EventRecord]) -> None:
        lines = []
        for record in records:
            if type(record) is EventRecord:
                if record.line is not None:
                    lines.append(record.line)
            elif JSON_LINE in record.__dict__:  # made and filtered when it was queued
                line = record.__dict__[JSON_LINE]
                if line is not None:
                    lines.append(line)
            elif self.filter(record):
                try:
                    lines.append(self.format(record))
                except Exception:
                    self.handleError(record)
        if not lines:
            return
        try:
            self._follow_the_folder()
            self._do_lock()
            try:
                self._check_stream()
                size = self._file_size()
                pending: list[str] = []
                for line in lines:
                    if 0 < self.maxBytes <= size:
                        if pending:
                            self.do_write(self.terminator.join(pending))
                            pending = []
                        self.doRollover()
                        size = self._file_size()
                    pending.append(line)
                    size += len(line.encode("utf-8", "replace")) + len(self.terminator)
                self.do_write(self.terminator.join(pending))
            finally:
                self._do_unlock()
        except OSError as error:  # a folder made unwritable, or a file where the folder was
            self._report_unwritable(error)
        except Exception:
            # handleError reports a LogRecord (an EventRecord has no message for it to print).
            last = records[-1]
            self.handleError(last.to_record() if type(last) is EventRecord else last)

    def _report_unwritable(self, error: OSError) -> None:
        """One line, at most every UNWRITABLE_REPORT_INTERVAL seconds: logging's own report is a
        traceback for every batch, which under load would flood the console and the journal."""
        now = time.monotonic()
        if now - self._unwritable_reported_at < UNWRITABLE_REPORT_INTERVAL:
            return
        self._unwritable_reported_at = now
        if isinstance(error, FileExistsError) and error.filename:
            reason = not_a_folder(error, error.filename)
        else:
            reason = error.strerror or str(error)
            if error.strerror and error.filename:
                reason += f": {error.filename}"
        stream = sys.stderr  # None without one (started with 2>&-); a closed pipe raises
        try:
            stream.write(f"warning: logging: cannot write {self.baseFilename} ({reason}); its lines are lost "
                         "until it can\n")
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass  # the writer thread must live on: logging comes back once the file can be written

    def _follow_the_folder(self) -> None:
        """The log folder was deleted (and maybe made again) under this process: make it again, and
        lock the lock file that is there now. Locking the deleted one, processes would no longer
        keep each other out, and their rollovers would lose lines."""
        lock_folder, log_folder = os.path.dirname(self.lockFilename), os.path.dirname(self.baseFilename)
        lock = self.stream_lock
        if lock is not None and not lock.closed:
            try:
                current = os.path.samestat(os.fstat(lock.fileno()), os.stat(self.lockFilename))
            except OSError:
                current = False
            if current and lock_folder == log_folder:
                return  # one stat per batch: the lock file this process holds is there, so is its folder
            if not current:
                lock.close()
                self.stream_lock = None  # _do_lock opens the one at the path
        os.makedirs(lock_folder, exist_ok=True)
        os.makedirs(log_folder, exist_ok=True)

    def _file_size(self) -> int:
        try:
            return os.path.getsize(self.baseFilename)
        except OSError:
            return 0


class HandOver(QueueHandler):
    """Queues each record with its JSON line already made, for the writer thread to write.

    The line is made here, on the caller's thread: a few microseconds of CPU that a second
    thread would otherwise spend holding the GIL, making the event loop wait for it after
    every socket call. (QueueHandler.prepare would instead fold message and traceback into
    one text field; the JSON formatter wants them apart.)
    """

    writer: "WriterThread | None" = None
    file_handler: "BatchFileHandler | None" = None
    #: Makes the file's JSON line of an event: (logger name, level, event, fields, created).
    #: setup_logging sets it: its file handler takes every level and filters only by redacting
    #: secrets, which EventLog then does itself (so its handlers are not to be changed later).
    event_line: "Callable[[str, int, str, dict, float], str] | None" = None

    def queue_event(self, record: EventRecord) -> None:
        self.queue.put_nowait(record)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        handler = self.file_handler
        if handler is not None and record.levelno >= handler.level:
            record.__dict__[JSON_LINE] = handler.format(record) if handler.filter(record) else None
        return record

    def flush(self) -> None:
        """Return once every record queued so far is written."""
        if self.writer is not None:
            self.writer.flush()


class WriterThread:
    """Takes records off the queue in batches and hands each batch to the handlers."""

    MAX_BATCH = 512
    #: Seconds the thread lets records gather after the first of a batch. The file lock, the
    #: rollover check and the write are paid once per batch; without the pause a busy server's
    #: batches are a record or two, and each wake-up also takes the GIL from the event loop.
    GATHER = 0.005

    def __init__(self, records: queue.SimpleQueue, handlers: list[logging.Handler]) -> None:
        self.records = records
        self.handlers = handlers
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="chatbot-log-writer", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread is not None:
            self.records.put(None)
            self.thread.join()
            self.thread = None

    def flush(self) -> None:
        done = threading.Event()
        self.records.put(done)
        if self.thread is not None:
            done.wait(10)

    def _run(self) -> None:
        behind = False
        while True:
            batch, item = [], self.records.get()
            if isinstance(item, _RECORDS) and self.GATHER and not behind:
                time.sleep(self.GATHER)
            while isinstance(item, _RECORDS):
                batch.append(item)
                if len(batch) >= self.MAX_BATCH:
                    item = False
                    break
                try:
                    item = self.records.get_nowait()
                except queue.Empty:
                    item = False
            # A full batch means records arrive faster than they are written: no pause then.
            behind = len(batch) >= self.MAX_BATCH
            if batch:
                self._write(batch)
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()

    def _write(self, batch: list[logging.LogRecord | EventRecord]) -> None:
        for handler in self.handlers:
            records = [record for record in batch if record.levelno >= handler.level]
            if isinstance(handler, BatchFileHandler):
                handler.emit_batch(records)
            else:
                for record in records:
                    handler.handle(record.to_record() if type(record) is EventRecord else record)


_RECORDS = (logging.LogRecord, EventRecord)
