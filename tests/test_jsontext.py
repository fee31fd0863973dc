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
