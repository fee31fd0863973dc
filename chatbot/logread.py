"""Reading log files back: rotated siblings in order, `.gz` transparently, damage reported.

Used by `chatbot replay`. It never raises on a bad line or file: each comes back as a
`LogLine` with its error (`path:line: what`).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["LogLine", "read_log_records"]


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a log file: the record, or why there is none (`path:line: what`)."""

    path: str
    line_no: int
    record: dict[str, Any] | None
    error: str | None


_ROTATED = re.compile(r"\.(\d+)(\.gz)?$")


def read_log_records(paths: Iterable[Path | str]) -> Iterator[LogLine]:
    """Every line of the given files, oldest first; never raises for bad or missing files.

    A base file (``chatbot.log``) brings its rotated siblings along. The files of one base,
    however they are named (the base, rotated files one by one, in any order), are read oldest
    first: ``chatbot.log.3(.gz)``, ``.2``, ``.1``, then ``chatbot.log``; a rotated file named
    without its base brings no sibling. Different bases are read in the order first named. A
    file named twice, directly or through a base file, is read once. A file that rotates while
    it is read may be seen partly twice or not at all; read a set that is not being written for
    an exact replay.
    """
    # A turn may straddle a rotation: only files read oldest first keep its records together.
    logs: dict[str, list[Path]] = {}
    for given in paths:
        path = Path(given)
        rotated = _ROTATED.search(path.name)
        base_name = path.name[: rotated.start()] if rotated else path.name
        # Siblings share their folder and base name, whichever way the folder is spelt.
        base = os.path.join(os.path.realpath(path.parent), base_name)
        logs.setdefault(base, []).extend([path] if rotated else _with_rotated(path))
    seen: set[str] = set()
    for files in logs.values():
        for path in sorted(files, key=_oldest_first):
            identity = os.path.realpath(path)
            if identity in seen:
                continue
            seen.add(identity)
            yield from _read_file(path)


def _with_rotated(path: Path) -> list[Path]:
    prefix = path.name
    try:
        rotated = [candidate for candidate in path.parent.iterdir() if candidate.name.startswith(prefix)
                   and _ROTATED.fullmatch(candidate.name[len(prefix) :])]
    except OSError:
        rotated = []
    if rotated and not path.exists():
        return rotated  # a rollover in progress: the new base file is not there yet
    return [*rotated, path]


def _oldest_first(path: Path) -> tuple[int, int, int]:
    """Sort key among the files of one base: the highest number is oldest, the base file last;
    a stray plain ".N" beside ".N.gz" is read after it."""
    rotated = _ROTATED.search(path.name)
    if rotated is None:
        return (1, 0, 0)
    return (0, -int(rotated[1]), 0 if rotated[2] else 1)


def _read_file(path: Path) -> Iterator[LogLine]:
    shown = str(path)
    line_no = 0
    previous: bytes | None = None
    try:
        with _open_binary(path) as stream:
            # One line of look-ahead: only the last line may be a torn, unfinished write.
            for raw in stream:
                if previous is not None:
                    line_no += 1
                    line = _parse_line(shown, line_no, previous, last=False)
                    if line:
                        yield line
                previous = raw
            if previous is not None:
                line_no += 1
                line = _parse_line(shown, line_no, previous, last=True)
                previous = None
                if line:
                    yield line
    except (OSError, EOFError, zlib.error) as error:  # a damaged or cut-off .gz, a file that went away
        # The look-ahead line was read whole before the damage: it is not lost with the rest.
        if previous is not None and previous.endswith(b"\n"):
            line_no += 1
            line = _parse_line(shown, line_no, previous, last=False)
            if line:
                yield line
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        yield LogLine(shown, line_no, None, f"{shown}: cannot read: {reason}")


def _open_binary(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _parse_line(shown: str, line_no: int, raw: bytes, *, last: bool) -> LogLine | None:
    if not raw.strip():
        return None
    where = f"{shown}:{line_no}"
    torn = " (unfinished last line)" if last and not raw.endswith(b"\n") else ""
    try:
        # Strict UTF-8 (json.loads of bytes would also take UTF-16 and encoded surrogates).
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return LogLine(shown, line_no, None, f"{where}: not valid UTF-8{torn}: {error.reason}")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        return LogLine(shown, line_no, None, f"{where}: not valid JSON{torn}: {error.msg}")
    except ValueError as error:  # an integer beyond the interpreter's digit limit
        return LogLine(shown, line_no, None, f"{where}: not readable JSON: {error}")
    except RecursionError:
        return LogLine(shown, line_no, None, f"{where}: not readable JSON: nested too deeply")
    if not isinstance(record, dict):
        kind = type(record).__name__
        return LogLine(shown, line_no, None, f"{where}: not a JSON object, got {kind}")
    return LogLine(shown, line_no, record, None)
