"""Parsing client frames, without a server."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbot.errors import ProtocolError
from chatbot import protocol
from chatbot.protocol import _loads_checked, _loads_plain, parse_frame


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        ("{", "bad_json", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        ("[]", "not_object", "a frame must be a JSON object, got an array"),
        ("null", "not_object", "a frame must be a JSON object, got null"),
        ('{"id": "x"}', "missing_field", "type: required field is missing"),
        ('{"type": "pong"}', "unknown_type", "type: unknown frame type 'pong' (expected one of: action, hello, "
                                             "history, message, ping)"),
        ('{"type": 3}', "bad_field", "type: expected a string, got a number"),
        ('{"type": null}', "bad_field", "type: expected a string, got null"),
        ('{"type": "message"}', "missing_field", "text: required field is missing"),
        ('{"type": "message", "text": true}', "bad_field", "text: expected a string, got a boolean"),
        ('{"type": "message", "text": "x", "secret": "yes"}', "bad_field", "secret: expected true or false, got a string"),
        ('{"type": "message", "text": "x", "secret": 1}', "bad_field", "secret: expected true or false, got a number"),
        ('{"type": "hello", "last_seq": "3"}', "bad_field", "last_seq: expected an integer, got a string"),
        ('{"type": "message", "text": "hi", "id": ""}', "bad_field", "id: must be 1 to 64 characters"),
        ('{"type": "message", "text": "a\\u0000b"}', "bad_field", "text: contains a NUL character"),
        ('{"type": "message", "text": "\\udc00"}', "lone_surrogate", "text: contains a lone surrogate at character 0"),
        ('{"type": "message", "text": "' + "я" * 11 + '"}', "text_too_long", "text: 11 characters, the limit is 10"),
        (b"\xc3\x28", "bad_utf8", "frame is not valid UTF-8 (byte 0)"),
        ('{"type": "ping", "x": ' + "9" * 5000 + "}", "bad_json", "not read: a number of more than 4300 digits"),
        ('{"type": "history", "before_seq": 100000000000000000000}', "bad_field",
         "before_seq: must be at most 9223372036854775807"),
        ("[" * 100000 + "]" * 100000, "bad_json", "not read: arrays or objects nested too deeply"),
    ],
)
def test_bad_frames(raw, code, message):
    with pytest.raises(ProtocolError) as error:
        parse_frame(raw, max_text_chars=10)
    assert error.value.code == code
    if message is not None:
        assert error.value.message == message


def test_good_frames_and_the_id_is_echoed_in_errors():
    assert parse_frame('{"type": "message", "id": "c-1", "text": "привет 👋"}', max_text_chars=10) == {
        "type": "message", "id": "c-1", "text": "привет 👋"}
    assert parse_frame(b'{"type": "ping"}', max_text_chars=10) == {"type": "ping"}
    assert parse_frame('{"type": "hello", "history": 9999}', max_text_chars=10)["history"] == 500
    with pytest.raises(ProtocolError) as error:
        parse_frame('{"type": "message", "id": "c-9", "text": 1}', max_text_chars=10)
    assert error.value.in_reply_to == "c-9"
    long_id = "c" * 65  # an id the server cannot take is still the one that frame had
    with pytest.raises(ProtocolError) as error:
        parse_frame(f'{{"type": "message", "id": "{long_id}", "text": "hi"}}', max_text_chars=10)
    assert (error.value.message, error.value.in_reply_to) == ("id: must be 1 to 64 characters", long_id)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**62, max_value=2**70)
    | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@given(fields=st.dictionaries(st.sampled_from(["type", "id", "text", "limit", "x", "é"]), json_values, max_size=4),
       ensure_ascii=st.booleans())
def test_frames_parse_to_what_the_standard_library_reads(fields, ensure_ascii):
    """orjson reads the frames it can read exactly as json does; the rest go to json itself."""
    raw = json.dumps(fields, ensure_ascii=ensure_ascii)
    try:
        expected = json.loads(raw)
    except ValueError:
        expected = None
    try:
        got = _loads_checked(raw) if (plain := _loads_plain(raw)) is None else plain
    except ProtocolError:
        got = None
    if plain is not None:
        assert [(key, type(value)) for key, value in plain.items()] == \
            [(key, type(value)) for key, value in expected.items()]
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def outcome(raw):
    try:
        return "ok", parse_frame(raw, max_text_chars=10)
    except ProtocolError as error:
        return "error", error.code, error.message


@pytest.mark.parametrize("raw", ['{"type": "ping", "a": "x\ny"}', '\ufeff{"type": "ping"}',
                                 '{"type": 1, "type": "ping"}', '{"type": "ping", "n": 01}', '{"type": "ping"} x',
                                 ' {"type": "ping"}\n', '{"type": "hello", "last_seq": 18446744073709551616}',
                                 '{"type": "hello", "last_seq": -9223372036854775809}', '{"type": "ping", "n": NaN}',
                                 '{"type": "message", "text": "\\ud800"}'])
def test_odd_frames_are_answered_as_by_the_standard_library_alone(raw, monkeypatch):
    fast = outcome(raw)
    monkeypatch.setattr(protocol, "_loads_plain", lambda raw: None)
    assert fast == outcome(raw)


# Near-JSON objects: numbers of any length, escapes, control characters, NaN, stray commas, a BOM.
near_frames = st.from_regex(r'\ufeff?\s*\{(\s*"[a-z\\\x00]{0,4}"\s*:\s*(-?0?\d{1,25}(\.\d*)?|"[a-z\\\n\t\x00é]{0,4}"'
                            r'|true|null|NaN|1e400|\[\])\s*,?)*\s*\}\s*.?', fullmatch=True)


@given(raw=near_frames)
def test_any_text_orjson_reads_is_read_alike_by_the_standard_library(raw):
    plain = _loads_plain(raw)
    if plain is not None:
        expected = json.loads(raw)
        assert [(key, type(value), value) for key, value in plain.items()] == \
            [(key, type(value), value) for key, value in expected.items()]


@pytest.mark.parametrize("frame_type", ["ping", "hello", "history"])
@pytest.mark.parametrize("odd_id", [5, None, True, [], {}, "", "x" * 100])
def test_an_id_on_a_frame_that_has_none_is_an_unknown_field_and_ignored(frame_type, odd_id):
    assert parse_frame(json.dumps({"type": frame_type, "id": odd_id}), max_text_chars=10)["type"] == frame_type


@given(fields=st.dictionaries(st.sampled_from(["id", "text", "name", "resume", "last_seq", "lang", "history",
                                               "before_seq", "limit", "x"]), json_values, max_size=5),
       frame_type=st.sampled_from(["hello", "message", "action", "history", "ping"]))
def test_any_frame_is_parsed_or_refused_with_a_protocol_error(fields, frame_type):
    try:
        parse_frame(json.dumps({**fields, "type": frame_type}), max_text_chars=100)
    except ProtocolError:
        pass
