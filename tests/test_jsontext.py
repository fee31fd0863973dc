"""jsontext: orjson where it can, the standard library where it cannot, the same text either way."""

from __future__ import annotations

import json

import pytest

from chatbot import jsontext


def test_what_orjson_refuses_is_written_as_orjson_would_have():
    assert jsontext.dumps({"big": 2 ** 70, "score": float("nan"), "keys": {(1, 2): 3, 4: 5}}) == \
        '{"big":1180591620717411303424,"score":null,"keys":{"(1, 2)":3,"4":5}}'
    assert jsontext.dumps({"s": "a\udc80", "big": 2 ** 70}) == '{"s":"a\\udc80","big":1180591620717411303424}'
    assert jsontext.dumps({9: 1, 10: 2, "big": 2 ** 70}, sort_keys=True) == '{"10":2,"9":1,"big":1180591620717411303424}'


def test_nesting_deeper_than_orjson_takes_is_written_and_a_value_holding_itself_is_refused():
    deep = current = {}
    for _ in range(600):
        current["a"] = current = {}
    assert json.loads(jsontext.dumps(deep)) == deep
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular reference detected"):
        jsontext.dumps(loop)


def test_a_value_reads_back_as_storage_gives_it_or_is_refused():
    import datetime
    import decimal

    assert jsontext.as_read_back(datetime.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05"
    assert jsontext.as_read_back((1, float("nan"), 2 ** 70, "a\ud800")) == [1, None, 2 ** 70, "a\ud800"]
    for refused in (decimal.Decimal("1.5"), {1, 2}):
        with pytest.raises(TypeError):
            jsontext.as_read_back(refused)
