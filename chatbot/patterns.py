"""Regular expressions written by bot authors: compiled alike everywhere, searched with a time limit.

Some patterns take exponential time on some texts: ``(a|aa)+$`` against forty 'a's and a
'b' runs for minutes in Python's `re`, and a search holds the event loop, so one message would
stop every conversation on the server. The `regex` module reads the same syntax as `re` (and
more), defuses many such patterns by itself and, for the rest, gives up after a time limit.
A text that goes past the limit raises `PatternTimeout`: the turn fails as a whole, nothing of
it is kept, and the error names the pattern for the bot's author. A turn either ran or did not,
so a replay from the logs stays exact whatever the speed of the machine replaying it.
"""

from __future__ import annotations

import regex

#: Seconds one pattern may take on one text. Real patterns take microseconds, and a millisecond
#: or two on the longest message allowed. Each search has its own: a budget shared by a text's
#: searches would also count the time the thread waits between them for the interpreter (other
#: threads), and fail innocent texts on a busy machine.
TIME_LIMIT = 0.05

Pattern = regex.Pattern
PatternMatch = regex.Match
PatternError = regex.error


class PatternTimeout(Exception):
    """A pattern was still searching a text when the time limit ran out."""

    def __init__(self, where: str, chars: int) -> None:
        super().__init__(f"{where}: took longer than {TIME_LIMIT * 1000:.0f} ms on a text of {chars} characters")
        self.where = where
        self.chars = chars


def compile_pattern(pattern: str) -> Pattern:
    """Compile an author's pattern; raises PatternError (with a position) when it is invalid."""
    return regex.compile(pattern, regex.VERSION0)


def search(pattern: Pattern, text: str, where: str) -> PatternMatch | None:
    """``pattern.search(text)``, or PatternTimeout naming ``where`` when it takes over TIME_LIMIT."""
    try:
        # concurrent=False holds the interpreter lock through the search, as `re` does: released,
        # the thread would wait for it again afterwards (other threads, up to milliseconds on the
        # event loop), and the time limit would count that wait.
        return pattern.search(text, concurrent=False, timeout=TIME_LIMIT)
    except TimeoutError:
        raise PatternTimeout(where, len(text)) from None
