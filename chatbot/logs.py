"""JSON-lines logging: setup for the command line, a cheap event façade, and a reader.

Every record becomes one JSON object per line in ``<log_dir>/chatbot.log``::

    {"ts":"2026-11-25T16:40:01.123Z","level":"info","event":"message.in",
     "pid":4242,"session":"ab12","conn":"c7","id":3,"text":"hi"}

A caller only queues its record (with its JSON line made); a writer thread writes what is
queued in batches. Several server processes may append to the same file: the writer holds a
file lock for each batch and for each rollover, so no line is lost or torn when the file rotates
to ``chatbot.log.1``, ``.2``, … (or ``.1.gz``, … with ``compress_backups``).

Only the command line calls :func:`setup_logging`; library code just logs, preferably through
:class:`EventLog`. :func:`read_log_records` reads a rotated set back in order, for replay.
The event names and their fields are listed in ``docs/logging.md``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonEncoder, JsonFormatter

from chatbot import jsontext
from chatbot.errors import ConfigError, not_a_folder
from chatbot.logread import LogLine, read_log_records
from chatbot.logwriter import EVENT_FIELDS, BatchFileHandler, EventRecord, HandOver, WriterThread

__all__ = [
    "EVENT_FIELDS",
    "LOG_FILE_NAME",
    "REDACTED",
    "SECRET_FIELDS",
    "as_read_back",
    "EventLog",
    "JsonLineFormatter",
    "LogLine",
    "LoggingHandle",
    "RedactFilter",
    "TextFormatter",
    "read_log_records",
    "record_fields",
    "setup_logging",
]

LOG_FILE_NAME = "chatbot.log"
REDACTED = "[redacted]"
SECRET_FIELDS = frozenset({"password", "secret", "token", "resume"})
CONSOLE_MODES = ("text", "json", "none")
LEVELS = ("debug", "info", "warning", "error", "critical")

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName", EVENT_FIELDS}
)
_PROJECT_LOGGER = "chatbot"
_PROJECT_PREFIX = _PROJECT_LOGGER + "."


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record: its `extra=` keys, then the fields of EventLog."""
    fields = {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_ATTRS and not key.startswith("_")
    }
    event_fields = record.__dict__.get(EVENT_FIELDS)
    if event_fields:
        fields.update(event_fields)
    return fields



def _remember_pid() -> None:
    global _pid
    _pid = os.getpid()


# Every line carries the pid, and getpid() is a system call: a few microseconds each on a busy
# virtual machine, several times a turn. It only changes in a forked child.
_remember_pid()
os.register_at_fork(after_in_child=_remember_pid)

class EventLog:
    """Logs one constant event name with structured fields; fields that are None are left out.

    ``log.event("message.in", session=s, conn=c, id=3, text="hi")``
    """

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def event(self, name: str, /, **fields: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self._emit(logging.INFO, name, fields, None)

    def warning(self, name: str, /, **fields: Any) -> None:
        if self.logger.isEnabledFor(logging.WARNING):
            self._emit(logging.WARNING, name, fields, None)

    def error(self, name: str, /, *, exc_info: Any = None, **fields: Any) -> None:
        if self.logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, name, fields, exc_info)

    def _emit(self, level: int, name: str, fields: dict[str, Any], exc_info: Any) -> None:
        # `fields` is the fresh **kwargs dict, so it is handed on as is unless a None must go.
        for value in fields.values():
            if value is None:
                fields = {key: value for key, value in fields.items() if value is not None}
                break
        logger = self.logger
        if exc_info is None:
            hand_over = _sole_hand_over(logger, level)
            if hand_over is not None and hand_over.event_line is not None:
                # setup_logging's handlers only: no LogRecord, and the line made at once.
                if not SECRET_FIELDS.isdisjoint(fields):
                    _redact(fields)
                created = time.time()
                try:
                    line = hand_over.event_line(logger.name, level, name, fields, created)
                except Exception:  # the LogRecord path below reports it through handleError
                    pass
                else:
                    hand_over.queue_event(EventRecord(logger.name, level, name, fields, created, line))
                    return
        if exc_info is True:
            exc_info = sys.exc_info()
        # makeRecord + handle skip logging's walk up the stack for the caller's file and line,
        # which the JSON lines do not show and which costs more than the rest of the call.
        logger.handle(logger.makeRecord(logger.name, level, "", 0, name, (), exc_info,
                                        extra={EVENT_FIELDS: fields}))


def _sole_hand_over(logger: logging.Logger, level: int) -> HandOver | None:
    """The HandOver of setup_logging if a record of `logger` would reach it and nothing else.

    Anything else on the way (a filter, another handler such as pytest's caplog) needs a real
    LogRecord, which EventLog then makes.
    """
    if logger.disabled or logger.filters:
        return None
    node = logger
    while node.parent is not None:
        if node.handlers or not node.propagate:
            return None
        node = node.parent
    handlers = node.handlers
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if type(handler) is not HandOver or handler.filters or level < handler.level:
        return None
    return handler


class RedactFilter(logging.Filter):
    """Replaces the value of any field named like a secret by "[redacted]".

    A second line of defence: callers must not pass secrets at all. Booleans are kept, so a
    flag such as ``secret: true`` (this message was a password answer) stays readable.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        attrs = record.__dict__
        if not SECRET_FIELDS.isdisjoint(attrs):
            _redact(attrs)
        event_fields = attrs.get(EVENT_FIELDS)
        if event_fields and not SECRET_FIELDS.isdisjoint(event_fields):
            _redact(event_fields)
        return True


def _redact(fields: dict[str, Any]) -> None:
    for key in SECRET_FIELDS.intersection(fields):
        if not isinstance(fields[key], bool):
            fields[key] = REDACTED


_MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))


class _UtcClock:
    """ISO 8601 UTC text with milliseconds; the part up to the second is reused within a second."""

    def __init__(self) -> None:
        # One tuple, replaced whole, so formatters on several threads never mix two seconds.
        self._last: tuple[int, str] = (-1, "")

    def iso(self, created: float) -> str:
        second = int(created)
        last_second, prefix = self._last
        if second != last_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._last = (second, prefix)
        # min: a fraction a hair below 1 can round up to 1000 ms.
        return prefix + _MILLISECONDS[min(int((created - second) * 1000), 999)]


_FALLBACK = JsonEncoder().default


def as_read_back(value: Any) -> Any:
    """A field's value as a log line gives it back: a tuple as a list, a datetime as ISO text,
    NaN as null, other objects as python-json-logger writes them."""
    return json.loads(jsontext.dumps([value], default=_FALLBACK))[0]


class JsonLineFormatter(JsonFormatter):
    """One JSON object per record: ts, level, event, pid, [process, logger], fields, [exc, stack].

    ``logger`` appears only for records from outside the project (for example tornado.access).
    A field that would overwrite one of the leading keys is kept with a trailing underscore.
    """

    def __init__(self, *, process_name: str | None = None) -> None:
        super().__init__(json_ensure_ascii=False)
        self.process_name = process_name
        self._clock = _UtcClock()
        # python-json-logger's encoder still decides how values JSON has no form for are written.
        self._fallback = _FALLBACK if self.json_encoder is JsonEncoder else self.json_encoder().default

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        return jsontext.dumps(log_data, default=self._fallback)

    #: Every key `_leading_keys` may write; a field of the same name gets a trailing underscore.
    LEADING_KEYS = frozenset({"ts", "level", "event", "pid", "process", "logger"})

    def _leading_keys(self, created: float, level: str, event: str, pid: int,
                      logger_name: str) -> dict[str, Any]:
        log_data = {"ts": self._clock.iso(created), "level": level, "event": event, "pid": pid}
        if self.process_name:
            log_data["process"] = self.process_name
        if not _is_project_logger(logger_name):
            log_data["logger"] = logger_name
        return log_data

    def event_line(self, logger_name: str, level: int, event: str, fields: dict[str, Any],
                   created: float) -> str:
        """The line `format` makes of an EventLog record with these fields, without the record."""
        log_data = self._leading_keys(created, logging.getLevelName(level).lower(), event, _pid, logger_name)
        if self.LEADING_KEYS.isdisjoint(fields):  # as good as always: no renaming, one C-level update
            log_data.update(fields)
        else:
            for key, value in fields.items():
                log_data[key + "_" if key in log_data else key] = value
        return self.jsonify_log_record(log_data)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data.update(self._leading_keys(record.created, record.levelname.lower(), record.message,
                                           record.process or _pid, record.name))
        # A record of EventLog carries its fields in one attribute: no need to look through the rest.
        fields = record.__dict__.get(EVENT_FIELDS)
        for key, value in (fields.items() if fields is not None else record_fields(record).items()):
            log_data[key + "_" if key in log_data else key] = value
        if "exc_info" in message_dict:
            log_data["exc"] = message_dict["exc_info"]
        if "stack_info" in message_dict:
            log_data["stack"] = message_dict["stack_info"]


class TextFormatter(logging.Formatter):
    """A short line for a person: ``16:40:01 INFO  message.in session=ab12 text='hi'``.

    Times are UTC like in the file. Context ids are printed bare; other values as Python
    literals, so spaces and quotes in user text stay unambiguous; long values are shortened.
    """

    BARE_FIELDS = frozenset({"session", "conn", "user", "flow", "state", "logger"})
    MAX_VALUE = 80
    _TOKEN = re.compile(r"[\w.:@/+-]+")

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.gmtime(record.created))
        parts = [f"{clock} {record.levelname:<5} {record.getMessage()}"]
        fields = record_fields(record)
        if not _is_project_logger(record.name):
            fields = {"logger": record.name, **fields}
        parts.extend(f"{key}={self._value(key, value)}" for key, value in fields.items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line

    def _value(self, key: str, value: Any) -> str:
        if key in self.BARE_FIELDS and isinstance(value, str) and self._TOKEN.fullmatch(value):
            return value
        try:
            text = repr(value)
        except Exception:  # an object whose repr fails still gets its line on the console
            text = f"<{type(value).__name__}>"
        return text if len(text) <= self.MAX_VALUE else text[: self.MAX_VALUE - 1] + "…"


def _is_project_logger(name: str) -> bool:
    return name == _PROJECT_LOGGER or name.startswith(_PROJECT_PREFIX)


@dataclass
class LoggingHandle:
    """What setup_logging installed on the root logger; close() takes it all away again."""

    path: Path
    handlers: list[logging.Handler]
    previous_level: int
    closed: bool = field(default=False)
    hand_over: logging.Handler | None = None
    writer: WriterThread | None = None

    def close(self) -> None:
        """Write out every record still queued, then remove and close the handlers."""
        if self.closed:
            return
        root = logging.getLogger()
        if self.hand_over is not None:
            root.removeHandler(self.hand_over)
            self.hand_over.writer = None
        if self.writer is not None:
            self.writer.stop()
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(self.previous_level)
        self.closed = True

    def __enter__(self) -> LoggingHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def setup_logging(
    *,
    log_dir: Path,
    max_bytes: int = 10 * 1024 * 1024,
    backup_count: int = 10,
    console: str = "text",
    level: str = "INFO",
    process_name: str | None = None,
    compress_backups: bool = False,
) -> LoggingHandle:
    """Send every record to ``log_dir/chatbot.log`` as JSON lines, and to stderr as chosen.

    max_bytes: size at which the file rotates; 0 never rotates. Default: 10 MiB.
    backup_count: rotated files kept (``chatbot.log.1`` is the newest). Default: 10.
    console: "text" (one short line per record), "json" (the file's lines) or "none".
    level: the lowest level logged, by name. Default: "INFO".
    process_name: written as ``process`` in every record, to tell processes apart.
    compress_backups: gzip rotated files (``chatbot.log.1.gz``). Default: off, because the
        compression runs while the shared lock is held and stalls every writing process.
    """
    level_no = _parse_level(level)
    if console not in CONSOLE_MODES:
        raise ConfigError(
            f"logging: unknown console mode {console!r} (expected text, json or none)"
        )
    if max_bytes < 0:
        raise ConfigError(f"logging: max_bytes must be 0 or more, got {max_bytes}")
    if backup_count < 1:
        # The handler would truncate the only file at each rollover and lose every line.
        raise ConfigError(f"logging: backup_count must be 1 or more, got {backup_count}")
    log_path = _prepare_log_file(Path(log_dir))

    json_formatter = JsonLineFormatter(process_name=process_name)
    redact = RedactFilter()
    file_handler = BatchFileHandler(
        str(log_path),
        maxBytes=max_bytes,
        backupCount=backup_count,
        encoding="utf-8",
        use_gzip=compress_backups,
    )
    file_handler.setFormatter(json_formatter)
    handlers: list[logging.Handler] = [file_handler]
    if console != "none":
        console_handler = logging.StreamHandler(sys.stderr)
        console_handler.setFormatter(json_formatter if console == "json" else TextFormatter())
        handlers.append(console_handler)

    root = logging.getLogger()
    previous_level = root.level
    for handler in handlers:
        handler.addFilter(redact)
    # Formatting a record and writing it under the file lock take a few tens of microseconds:
    # a thread of its own does that, in batches, so a server's event loop only queues records.
    records: queue.SimpleQueue = queue.SimpleQueue()
    writer = WriterThread(records, handlers)
    hand_over = HandOver(records)
    hand_over.writer = writer
    hand_over.file_handler = file_handler
    hand_over.event_line = json_formatter.event_line
    root.addHandler(hand_over)
    root.setLevel(level_no)
    # Records carry no thread or process names (setup_logging is for the application, which
    # may set these module switches): each costs LogRecord a look-up per record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # transitions reports every callback it runs at INFO: a line per callback per turn, and no
    # event of ours. Its warnings and errors still come through.
    logging.getLogger("transitions").setLevel(max(level_no, logging.WARNING))
    # peewee's debug records are its SQL with the parameters: password hashes, secrets' masks,
    # whole conversations. Debugging the server must not put those in files that get shared.
    logging.getLogger("peewee").setLevel(max(level_no, logging.INFO))
    writer.start()
    return LoggingHandle(path=log_path, handlers=handlers, previous_level=previous_level,
                         hand_over=hand_over, writer=writer)


def _parse_level(level: str) -> int:
    name = str(level).lower()
    if name not in LEVELS:
        raise ConfigError(f"logging: unknown level {level!r} (expected one of {', '.join(LEVELS)})")
    return logging.getLevelName(name.upper())


def _prepare_log_file(log_dir: Path) -> Path:
    """Fails now, with the reason, if the log file cannot be written (the handler opens late)."""
    log_path = log_dir / LOG_FILE_NAME
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise ConfigError(f"logging: cannot write {log_path}: {not_a_folder(error, log_dir)}") from None
    return log_path
