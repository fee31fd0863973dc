"""Bot authors' regular expressions: the syntax they are read with, and the time limit."""

from __future__ import annotations

import time

import pytest

from chatbot.patterns import TIME_LIMIT, PatternError, PatternTimeout, compile_pattern, deadline, search

#: Exponential for a backtracking matcher: Python's `re` needs minutes for it.
RUNAWAY = r"(a|aa)+$"
RUNAWAY_TEXT = "a" * 40 + "b"


def test_a_runaway_search_stops_at_the_time_limit_and_names_the_pattern():
    started = time.perf_counter()
    with pytest.raises(PatternTimeout) as raised:
        search(compile_pattern(RUNAWAY), RUNAWAY_TEXT, "intents.x.patterns.en[0]", deadline())
    assert time.perf_counter() - started < TIME_LIMIT + 0.5
    assert raised.value.where == "intents.x.patterns.en[0]"
    assert raised.value.chars == 41
    assert str(raised.value) == "intents.x.patterns.en[0]: took longer than 50 ms on a text of 41 characters"


def test_a_deadline_already_past_stops_even_a_quick_search():
    with pytest.raises(PatternTimeout):
        search(compile_pattern("b"), "abc", "where", time.monotonic() - 1)


def test_ordinary_searches_find_what_re_finds():
    found = search(compile_pattern(r"^(?:call me|my name is) (?P<nickname>.+)$"), "call me ann", "w", deadline())
    assert found.group("nickname") == "ann"
    assert search(compile_pattern(r"\blarge\b"), "a largest one", "w", deadline()) is None


def test_the_regex_syntax_beyond_re_is_understood():
    assert compile_pattern(r"(?<size>\p{L}+)").groupindex == {"size": 1}
    assert search(compile_pattern(r"^\p{Lu}"), "Ёлка", "w", deadline()) is not None


def test_an_invalid_pattern_raises_with_its_position():
    with pytest.raises(PatternError, match="position"):
        compile_pattern("(unclosed")
