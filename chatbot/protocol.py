"""The wire protocol's frames, parsed and built without any I/O (see docs/protocol.md).

`parse_frame` turns what arrived on the socket into a checked dict or raises
ProtocolError with the machine-readable code the client gets back.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import orjson

from chatbot import jsontext
from chatbot.errors import ProtocolError

MAX_ID_CHARS = 64
MAX_HISTORY = 500
MAX_NAME_CHARS = 64
#: The largest integer a database column takes (a seq never comes near it).
MAX_INTEGER = 2**63 - 1

# The fields of each client frame: name -> (type, required).
_FIELDS: dict[str, dict[str, tuple[type | tuple[type, ...], bool]]] = {
    "hello": {"resume": (str, False), "last_seq": (int, False), "lang": (str, False), "history": (int, False)},
    "message": {"id": (str, False), "text": (str, True), "secret": (bool, False)},
    "action": {"id": (str, False), "name": (str, True)},
    "history": {"before_seq": (int, False), "limit": (int, False)},
    "ping": {},
}
TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false"}
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def parse_frame(raw: str | bytes, *, max_text_chars: int) -> dict[str, Any]:
    """Check one client frame; raise ProtocolError naming what is wrong."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ProtocolError("bad_utf8", f"frame is not valid UTF-8 (byte {err.start})") from None
    frame = _loads_plain(raw)
    if frame is None:
        frame = _loads_checked(raw)
    if not isinstance(frame, dict):
        raise ProtocolError("not_object", f"a frame must be a JSON object, got {_json_type(frame)}")
    in_reply_to = frame.get("id") if isinstance(frame.get("id"), str) else None
    if "type" not in frame:
        raise _error("missing_field", "type: required field is missing", in_reply_to)
    kind = frame["type"]
    if not isinstance(kind, str):
        raise _error("bad_field", f"type: expected a string, got {_json_type(kind)}", in_reply_to)
    if kind not in _FIELDS:
        raise _error("unknown_type", f"type: unknown frame type {kind!r} (expected one of: "
                                     f"{', '.join(sorted(_FIELDS))})", in_reply_to)
    for name, (expected, required) in _FIELDS[kind].items():
        if name not in frame:
            if required:
                raise _error("missing_field", f"{name}: required field is missing", in_reply_to)
            continue
        value = frame[name]
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise _error("bad_field", f"{name}: expected {TYPE_NAMES[expected]}, got {_json_type(value)}",
                         in_reply_to)
        if isinstance(value, str):
            _check_text(name, value, in_reply_to)
    _check_limits(kind, frame, max_text_chars, in_reply_to)
    return frame


def frame_id(raw: str | bytes) -> str | None:
    """The `id` of a frame that is not otherwise checked (one refused by the rate limiter), if usable."""
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = frame.get("id") if type(frame) is dict else None
    return value if isinstance(value, str) and 1 <= len(value) <= MAX_ID_CHARS else None


def _loads_plain(raw: str) -> dict | None:
    """orjson's parse of a frame it reads exactly as the standard library would, else None.

    orjson takes a fraction of the time, but refuses what the standard library takes (NaN,
    lone surrogates, nesting beyond 1024) and reads integers beyond 64 bits as floats. So only
    an object of strings, integers, booleans and nulls is taken from it (a float there may have
    been such an integer); anything else, bad JSON included, goes to `_loads_checked`, and every
    error and every value is the standard library's.
    """
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(frame) is not dict:
        return None
    for value in frame.values():
        if type(value) not in _PLAIN_TYPES:
            return None
    return frame


def _loads_checked(raw: str) -> Any:
    """The standard library's parse, whose errors name what is wrong and where."""
    try:
        frame = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ProtocolError("bad_json", f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") \
            from None
    except ValueError:  # an integer of more digits than Python converts (a guard against slow parses)
        raise ProtocolError("bad_json", f"not read: a number of more than {sys.get_int_max_str_digits()} "
                                        "digits") from None
    except RecursionError:
        raise ProtocolError("bad_json", "not read: arrays or objects nested too deeply") from None
    return frame


def _check_text(name: str, value: str, in_reply_to: str | None) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise _error("lone_surrogate", f"{name}: contains a lone surrogate at character {err.start}",
                     in_reply_to) from None
    if "\x00" in value:
        raise _error("bad_field", f"{name}: contains a NUL character", in_reply_to)


def _check_limits(kind: str, frame: dict, max_text_chars: int, in_reply_to: str | None) -> None:
    # Only messages and actions have an id; on other frames it is an unknown field, ignored.
    if "id" in _FIELDS[kind] and "id" in frame and not 1 <= len(frame["id"]) <= MAX_ID_CHARS:
        raise _error("bad_field", f"id: must be 1 to {MAX_ID_CHARS} characters", in_reply_to)
    if kind == "message":
        text = frame["text"]
        if len(text) > max_text_chars:
            raise _error("text_too_long", f"text: {len(text)} characters, the limit is {max_text_chars}",
                         in_reply_to)
        if not text.strip():
            raise _error("bad_field", "text: must not be empty", in_reply_to)
    if kind == "action" and not 1 <= len(frame["name"]) <= MAX_NAME_CHARS:
        raise _error("bad_field", f"name: must be 1 to {MAX_NAME_CHARS} characters", in_reply_to)
    declared = _FIELDS[kind]  # what another kind of frame would check is an unknown field here
    for name in ("last_seq", "history", "before_seq", "limit"):
        if name in declared and name in frame and frame[name] < 0:
            raise _error("bad_field", f"{name}: must not be negative", in_reply_to)
        if name in declared and name in frame and frame[name] > MAX_INTEGER:
            raise _error("bad_field", f"{name}: must be at most {MAX_INTEGER}", in_reply_to)
    for name in ("history", "limit"):
        if name in declared and name in frame and frame[name] > MAX_HISTORY:
            frame[name] = MAX_HISTORY


def _error(code: str, message: str, in_reply_to: str | None) -> ProtocolError:
    return ProtocolError(code, message, in_reply_to=in_reply_to)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


# --- server frames ------------------------------------------------------------------------
def error_frame(code: str, message: str, in_reply_to: str | None = None) -> dict:
    """An `error` frame; `in_reply_to` names the client frame it answers, when that had an id."""
    frame = {"type": "error", "code": code, "message": message}
    if in_reply_to is not None:
        frame["in_reply_to"] = in_reply_to
    return frame


def encode(frame: dict) -> str:
    return jsontext.dumps(frame)
