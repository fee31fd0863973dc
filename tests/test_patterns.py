"""Bot authors' regular expressions: the syntax they are read with, and the time limit."""

from __future__ import annotations

import time

import pytest

from chatbot.patterns import TIME_LIMIT, PatternError, PatternTimeout, compile_pattern, search

#: Exponential for a backtracking matcher: Python's `re` needs minutes for it.
RUNAWAY = r"(a|aa)+$"
RUNAWAY_TEXT = "a" * 40 + "b"


def test_a_runaway_search_stops_at_the_time_limit_and_names_the_pattern():
    started = time.perf_counter()
    with pytest.raises(PatternTimeout) as raised:
        search(compile_pattern(RUNAWAY), RUNAWAY_TEXT, "intents.x.patterns.en[0]")
    assert time.perf_counter() - started < TIME_LIMIT + 0.5
    assert raised.value.where == "intents.x.patterns.en[0]"
    assert raised.value.chars == 41
    assert str(raised.value) == "intents.x.patterns.en[0]: took longer than 50 ms on a text of 41 characters"


def test_a_quick_search_goes_through_while_other_threads_hold_the_interpreter():
    import threading

    stop = threading.Event()

    def busy():
        while not stop.is_set():
            sum(range(10_000))

    threads = [threading.Thread(target=busy) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        pattern = compile_pattern(r"^(?:hello|hi)\b")
        for _ in range(300):  # each waits for the interpreter between searches, never inside one
            assert search(pattern, "hello there", "w") is not None
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_ordinary_searches_find_what_re_finds():
    found = search(compile_pattern(r"^(?:call me|my name is) (?P<nickname>.+)$"), "call me ann", "w")
    assert found.group("nickname") == "ann"
    assert search(compile_pattern(r"\blarge\b"), "a largest one", "w") is None


def test_the_regex_syntax_beyond_re_is_understood():
    assert compile_pattern(r"(?<size>\p{L}+)").groupindex == {"size": 1}
    assert search(compile_pattern(r"^\p{Lu}"), "Ёлка", "w") is not None


def test_an_invalid_pattern_raises_with_its_position():
    with pytest.raises(PatternError, match="position"):
        compile_pattern("(unclosed")
