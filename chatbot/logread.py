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

    A base file (``chatbot.log``) brings its rotated siblings along, oldest first:
    ``chatbot.log.3(.gz)``, ``.2``, ``.1``, then ``chatbot.log``. A file named twice, directly
    or through a base file, is read once. A file that rotates while it is read may be seen
    partly twice or not at all; read a set that is not being written for an exact replay.
    """
    seen: set[str] = set()
    for given in paths:
        for path in _expand_rotated(Path(given)):
            identity = os.path.realpath(path)
            if identity in seen:
                continue
            seen.add(identity)
            yield from _read_file(path)


def _expand_rotated(path: Path) -> list[Path]:
    if _ROTATED.search(path.name):
        return [path]
    siblings: list[tuple[int, int, Path]] = []
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        candidates = []
    prefix = path.name
    for candidate in candidates:
        rest = candidate.name[len(prefix) :] if candidate.name.startswith(prefix) else ""
        match = _ROTATED.fullmatch(rest)
        if match:
            siblings.append((int(match[1]), 0 if match[2] else 1, candidate))
    # Highest number is oldest; a stray plain ".N" beside ".N.gz" is read after it.
    siblings.sort(key=lambda item: (-item[0], item[1]))
    rotated = [candidate for _, _, candidate in siblings]
    if siblings and not path.exists():
        return rotated  # a rollover in progress: the new base file is not there yet
    return [*rotated, path]


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
