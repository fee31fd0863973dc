"""Reading JSON logs back into recorded sessions, each a timeline of turns and reconnects.

A session's records may be spread over rotated files, several server processes writing
to one file, restarts and reconnects.  Records are grouped by session, and within a
session by the process that wrote them: the records of one turn (its input, the
environment's answers, transitions, slots, account events, replies) are written by one
process, in that order.  Turns are then put in order by the `seq` of their first reply,
which the server numbers per session across restarts, so files read in the wrong order
or two processes taking turns of one session still give the true order.  The files of one
log are read oldest first however they are named (see `chatbot.logs.read_log_records`), so a
turn that straddles a rotation is read whole.

Bad lines never stop the reading: each one becomes a warning naming its file and line.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from chatbot.errors import ChatbotError
from chatbot.logs import LOG_FILE_NAME, read_log_records

__all__ = ["LogSet", "Mark", "RecordedSession", "Step", "UnusableInput", "log_paths", "read_sessions"]

#: Events of one turn, written after its input in this order.
TURN_EVENTS = frozenset({"effect", "transition", "slot.set", "account.register", "account.login",
                         "account.logout", "reply.out"})
#: Events replay knows and has no use for.
IGNORED_EVENTS = frozenset({"server.start", "server.stop", "storage.stuck", "server.connections_capped", "server.full",
                            "conn.open", "protocol.error", "ratelimit.hit",
                            "sessions.deleted", "sessions.expiry_failed", "cluster.listener_lost",
                            "session.language_not_stored", "session.token_reissued",
                            "session.token_not_reissued", "message.secret_refused"})
#: Fields without which a record of that event cannot be used.
REQUIRED_FIELDS = {
    "session.created": ("session",),
    "session.resumed": ("session",),
    "session.expired": ("session",),
    "message.in": ("session", "text"),
    "action.in": ("session", "name"),
    "effect": ("session", "name"),
    "transition": ("session", "flow", "from", "to", "trigger"),
    "slot.set": ("session", "slot"),
    "account.register": ("session",),
    "account.login": ("session",),
    "account.logout": ("session",),
    "reply.out": ("session", "seq", "text"),
}
#: What the fields replay reads must hold, when a record has them: (types, in words).
_TEXT = ((str,), "a string")
_OPTIONAL_TEXT = ((str, type(None)), "a string or null")
FIELD_TYPES = {
    "session": _TEXT, "text": _TEXT, "name": _TEXT, "flow": _OPTIONAL_TEXT,
    "state": _OPTIONAL_TEXT, "from": _TEXT, "to": _TEXT, "trigger": _TEXT, "slot": _TEXT,
    "user": _OPTIONAL_TEXT, "conn": _OPTIONAL_TEXT, "lang": _OPTIONAL_TEXT, "input": _OPTIONAL_TEXT,
    "id": _OPTIONAL_TEXT, "in_reply_to": _OPTIONAL_TEXT,
    "seq": ((int,), "a whole number"), "buttons": ((list, type(None)), "a list or null"),
    # Which process wrote a line: they become keys that tell the writers of one log apart.
    "pid": ((int, type(None)), "a whole number or null"), "process": _OPTIONAL_TEXT,
}
#: A seq beyond this cannot be told apart from its neighbours once turns are put in order.
MAX_SEQ = 2 ** 52
#: At most this many warnings are kept word for word; the rest are only counted.
MAX_WARNINGS = 200


class UnusableInput(ChatbotError):
    """Replay cannot work with what it was given: no such file, no records, no such session."""


@dataclass(slots=True, eq=False)
class Step:
    """One turn as the log recorded it: an input (or the greeting) and what it produced."""

    kind: str  # "greeting", "message", "action", or "unknown" when the input's line is missing
    where: str  # "path:line" of the record that started it
    ts: str
    number: int = -1  # position among the session's turns, the greeting being 0
    text: str | None = None  # a message's text ("[redacted]" for a password)
    secret: bool = False  # the text was typed into a password input
    action: str | None = None  # a button's action name
    state: str | None = None  # "flow:state" before the turn
    user: str | None = None  # signed-in user before the turn
    conn: str | None = None
    client_id: str | None = None
    lang: str | None = None  # the greeting's language
    effects: list[dict] = field(default_factory=list)  # the records as read: name, result
    transitions: list[dict] = field(default_factory=list)
    slots: list[dict] = field(default_factory=list)
    accounts: list[dict] = field(default_factory=list)
    replies: list[dict] = field(default_factory=list)
    error: str | None = None  # why the server failed this turn, as its log said
    #: A line that may have been this turn's was unusable (a warning) near it: after the previous
    #: turn of its writer began, before the next one began (an unreadable line, or a skipped record
    #: of its session). Only then may a line it lacks be among the warnings.
    warned: bool = False

    @property
    def finished(self) -> bool:
        return bool(self.replies)

    @property
    def lost_replies(self) -> bool:
        """The turn logged what it did but no reply: a reply's line is missing (a turn's records
        are written together, after its commit, and every committed turn replies)."""
        return not self.replies and (self.kind == "greeting" or bool(self.effects or self.transitions
                                                                     or self.slots or self.accounts))


@dataclass(slots=True, eq=False)
class Mark:
    """Something that happened to a session between turns: `resumed`, `closed` or `expired`."""

    kind: str
    where: str
    ts: str
    record: dict


@dataclass(slots=True, eq=False)
class RecordedSession:
    id: str
    where: str  # where its first record is
    lang: str | None = None  # from session.created; None when the log lacks its start
    timeline: list[Step | Mark] = field(default_factory=list)

    @property
    def started(self) -> bool:
        steps = self.steps
        return bool(steps) and steps[0].kind == "greeting"

    @property
    def steps(self) -> list[Step]:
        return [item for item in self.timeline if isinstance(item, Step)]

    @property
    def user(self) -> str | None:
        """The last user the session was signed in as, for reports."""
        for step in reversed(self.steps):
            for account in reversed(step.accounts):
                if account.get("user") and account.get("ok") and account.get("event") != "account.logout":
                    return account["user"]
            if step.user:
                return step.user
        return None


@dataclass(slots=True)
class LogSet:
    """Everything read from a set of log files."""

    sessions: dict[str, RecordedSession]
    records: int = 0  # JSON records read, of any kind
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0
    files: list[str] = field(default_factory=list)

    def warn(self, text: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(text)


def log_paths(given: Iterable[Path | str]) -> list[Path]:
    """A directory stands for the chatbot.log in it."""
    paths = []
    for item in given:
        path = Path(item)
        paths.append(path / LOG_FILE_NAME if path.is_dir() else path)
    return paths


def read_sessions(paths: Iterable[Path | str]) -> LogSet:
    """Read log files (rotated siblings and .gz included) into sessions; never raises for bad input."""
    builder = _Builder()
    files = builder.files
    with _collector_paused():
        for line in read_log_records(log_paths(paths)):
            if line.path not in files:
                files[line.path] = None
            record = line.record
            if record is None:
                builder.logs.warn(line.error or f"{line.path}:{line.line_no}: unreadable line")
                builder.unreadable += 1
                continue
            builder.path, builder.line_no = line.path, line.line_no
            builder.add(record)
    return builder.finish()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Reading makes many small objects and no reference cycles: the cyclic garbage collector
    would only scan the growing heap again and again (a fifth of the reading time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _bad_field(record: dict) -> str | None:
    """What is wrong with the first field of a record that replay could not use, if any."""
    for name, value in record.items():
        expected = FIELD_TYPES.get(name)
        if expected is None:
            continue
        types, in_words = expected
        if type(value) is bool or not isinstance(value, types):
            return f"'{name}' must be {in_words}, got {_shown(value)}"
        if name == "seq" and not 0 <= value <= MAX_SEQ:
            return f"'seq' must be from 0 to {MAX_SEQ}, got {_shown(value)}"
        if name == "buttons" and value and not all(isinstance(button, dict) for button in value):
            return f"'buttons' must be a list of objects, got {_shown(value)}"
    return None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


class _Builder:
    """Groups records into sessions and turns; `path` and `line_no` say where the current record is."""

    def __init__(self) -> None:
        self.logs = LogSet(sessions={})
        self.files: dict[str, None] = {}  # in reading order
        self.path = ""
        self.line_no = 0
        #: The turn each process is writing, per session: (session, pid, process) → Step.
        self.open: dict[tuple, Step] = {}
        #: Lines that may have been any session's (unreadable ones), and skipped records per session:
        #: what a turn may lack. A warning about another session's record says nothing of this one's.
        self.unreadable = 0
        self.skipped: Counter[str] = Counter()
        #: Those counts for a writer's session when its turn began (see `_losses`).
        self.losses_at_start: dict[tuple, int] = {}
        self.handlers = {
            "session.created": self._created,
            "session.resumed": self._mark,
            "session.expired": self._mark,
            "conn.close": self._closed,
            "message.in": self._input,
            "action.in": self._input,
            "error.unhandled": self._error,
            "turn.pattern_timeout": self._error,
            "storage.failed": self._error,
        }

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line_no}"

    def add(self, record: dict) -> None:
        self.logs.records += 1
        if "logger" in record:
            return  # a record of another library (tornado, transitions)
        event = record.get("event")
        if not isinstance(event, str):
            self.logs.warn(f"{self.where}: not a chatbot event record (no 'event' field): an older log format?")
            self._skipped(record)
            return
        if type(record.get("ts", "")) is not str:  # only shown, never replayed: the record stays usable
            self.logs.warn(f"{self.where}: {event}: 'ts' must be a string, got {_shown(record['ts'])}, "
                           "taken as unknown")
            record["ts"] = ""
        problem = _bad_field(record)
        if problem is not None:
            self.logs.warn(f"{self.where}: {event}: {problem}, skipped")
            self._skipped(record)
            return
        required = REQUIRED_FIELDS.get(event)
        if required is not None:
            for name in required:
                if name not in record:
                    missing = ", ".join(repr(m) for m in required if m not in record)
                    self.logs.warn(f"{self.where}: {event} without {missing}, skipped: an older log format?")
                    self._skipped(record)
                    return
            if event in TURN_EVENTS:
                self._turn_record(event, record)
                return
        handler = self.handlers.get(event)
        if handler is not None:
            handler(event, record)
        elif event not in IGNORED_EVENTS:
            self.logs.warn(f"{self.where}: unknown event {event!r}, skipped")
            self._skipped(record)

    def _skipped(self, record: dict) -> None:
        session = record.get("session")
        if isinstance(session, str):
            self.skipped[session] += 1

    def _losses(self, writer: tuple) -> int:
        """Lines so far that may have been one a turn of this writer's session lacks."""
        return self.unreadable + self.skipped[writer[0]]

    # --- sessions and their turns -------------------------------------------------------------
    def _session(self, record: dict) -> RecordedSession:
        session_id = record["session"]
        session = self.logs.sessions.get(session_id)
        if session is None:
            session = self.logs.sessions[session_id] = RecordedSession(session_id, self.where)
        return session

    @staticmethod
    def _writer(record: dict) -> tuple:
        return record["session"], record.get("pid"), record.get("process")

    def _start(self, session: RecordedSession, record: dict, step: Step) -> None:
        session.timeline.append(step)
        writer = self._writer(record)
        if self._losses(writer) > self.losses_at_start.get(writer, 0):
            # The unusable line may be one the previous turn lacks (a reply) or one this turn lacks
            # (its input, a turn before it); nothing comes before a session's greeting.
            previous = self.open.get(writer)
            if previous is not None:
                previous.warned = True
            step.warned = step.kind != "greeting"
        self.open[writer] = step
        self.losses_at_start[writer] = self._losses(writer)

    def _created(self, event: str, record: dict) -> None:
        session = self._session(record)
        if session.lang is not None:
            self.logs.warn(f"{self.where}: session {record['session']} created a second time, skipped")
            return
        session.lang = str(record.get("lang") or "")
        self._start(session, record, Step("greeting", self.where, record.get("ts", ""), lang=session.lang,
                                          conn=record.get("conn")))

    def _input(self, event: str, record: dict) -> None:
        session = self._session(record)
        flow, state = record.get("flow"), record.get("state")
        step = Step("message" if event == "message.in" else "action", self.where, record.get("ts", ""),
                    state=f"{flow}:{state}" if flow and state else None, user=record.get("user"),
                    conn=record.get("conn"), client_id=record.get("id"))
        if event == "message.in":
            step.text = str(record["text"])
            step.secret = record.get("secret") is True
        else:
            step.action = str(record["name"])
        self._start(session, record, step)

    def _turn_record(self, event: str, record: dict) -> None:
        key = (record["session"], record.get("pid"), record.get("process"))
        step = self.open.get(key)
        if step is None or (step.replies and not self._continues(step, event, record)):
            # The turn's input is not in the log (a bad line, or a file rotated away).
            step = Step("unknown", self.where, record.get("ts", ""))
            self._start(self._session(record), record, step)
        if event == "reply.out":
            step.replies.append(record)
        elif event == "effect":
            step.effects.append(record)
        elif event == "transition":
            step.transitions.append(record)
        elif event == "slot.set":
            step.slots.append(record)
        else:
            step.accounts.append(record)

    @staticmethod
    def _continues(step: Step, event: str, record: dict) -> bool:
        """Whether a record continues a turn that has replies: only its next reply, numbered in a row,
        answering the same message (a turn whose input line was lost may have logged only replies)."""
        if event != "reply.out" or record.get("in_reply_to") != step.client_id:
            return False
        return record["seq"] == step.replies[-1]["seq"] + 1

    def _mark(self, event: str, record: dict) -> None:
        session = self._session(record)
        session.timeline.append(Mark(event.removeprefix("session."), self.where, record.get("ts", ""), record))

    def _closed(self, event: str, record: dict) -> None:
        if isinstance(record.get("session"), str):
            session = self._session(record)
            session.timeline.append(Mark("closed", self.where, record.get("ts", ""), record))

    def _error(self, event: str, record: dict) -> None:
        if isinstance(record.get("session"), str):
            step = self.open.get(self._writer(record))
            if step is not None:
                pattern = record.get("pattern")
                step.error = f"{pattern}: too slow ({event})" if isinstance(pattern, str) else event

    # --- order ---------------------------------------------------------------------------------
    def finish(self) -> LogSet:
        for writer, step in self.open.items():
            if self._losses(writer) > self.losses_at_start[writer]:
                step.warned = True
        for session in self.logs.sessions.values():
            _order(session)
        self.logs.files = list(self.files)
        return self.logs


def _order(session: RecordedSession) -> None:
    """Sort a session's timeline by reply seq.

    A turn is placed by the seq of its first reply; a reconnect by the seq the server had
    reached, when the log says it.  Anything else (a reconnect without it, a disconnect, a turn
    that got no reply) goes just before the next placed item read after it, or after the last
    one.  Items placed alike (reconnects with no turn between them) keep their reading order.
    """
    keys: list[float | None] = []
    for item in session.timeline:
        if isinstance(item, Step) and item.replies and isinstance(item.replies[0].get("seq"), int):
            keys.append(float(item.replies[0]["seq"]))
        elif isinstance(item, Mark) and isinstance(item.record.get("seq"), int):
            keys.append(item.record["seq"] + 0.5)  # after the turn that ended there, before the next one
        else:
            keys.append(None)
    # (key, the reading position of the item that placed it, its own): an unplaced item sorts
    # next to the item it was placed by, even among items of the same key.
    # An unplaced item read after the last placed one goes right after that one.
    last = max((index for index, key in enumerate(keys) if key is not None), default=None)
    following = (0.0, 0) if last is None else (keys[last], last)
    sort_keys: list[tuple[float, int, int]] = [(0.0, 0, 0)] * len(keys)
    for index in range(len(keys) - 1, -1, -1):
        key = keys[index]
        if key is not None:
            following = (key, index)
        sort_keys[index] = (*following, index)
    positions = sorted(range(len(keys)), key=sort_keys.__getitem__)
    session.timeline[:] = [session.timeline[index] for index in positions]
    number = 0
    for item in session.timeline:
        if isinstance(item, Step):
            item.number = number
            number += 1
