"""Text analysis for dialogs: normalisation, intent matching and slot extraction.

Everything here is pure and synchronous: no I/O, no logging. The only state shared between
calls is what an :class:`IntentMatcher` keeps to answer faster (its indexes, and its answers to
short texts), which never changes an answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from chatbot.patterns import Pattern, PatternError, PatternMatch, compile_pattern, search

__all__ = ["IntentMatcher", "IntentSpec", "Match", "extract", "normalise"]

# Punctuation becomes a space so that "hello,world" and "hello world" read alike. Every P*
# character lives in the first two planes (a test checks this), so scanning them is enough.
# Variation selectors and skin-tone modifiers change how an emoji looks, not what it says:
# dropping them lets '❤' match '❤️' and '👋🏽' match '👋'.
_FOLD_TABLE: dict[int, str | None] = {
    code: " " for code in range(0x20000) if unicodedata.category(chr(code))[0] == "P"
}
_FOLD_TABLE.update({ord("ё"): "е", 0xFE0E: None, 0xFE0F: None})
_FOLD_TABLE.update(dict.fromkeys(range(0x1F3FB, 0x1F400)))


# An emoji or other pictorial symbol (category So) glued to a word is a word of its own: 'hi👋'
# reads as 'hi 👋'. Runs of symbols stay together ('👋👋' still matches '^👋+$'), and so do
# currency and maths signs (Sc, Sm), which belong to what they stand next to ('$5', 'c++').
# Every So character lives in the first two planes too (a test checks this). A set, not a
# regular expression: a class of thousands of ranges is slow to scan.
_PICTORIAL = frozenset(chr(code) for code in range(0x20000) if unicodedata.category(chr(code)) == "So")


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"  # what \w matches


def _splits(before: str, after: str) -> bool:
    """Whether normalise() puts a space between these two characters: a word meets a symbol."""
    if before in _PICTORIAL:
        return _is_word_char(after)
    return after in _PICTORIAL and _is_word_char(before)


def _split_symbols(text: str) -> str:
    if text.isascii() or _PICTORIAL.isdisjoint(text):  # most texts: nothing to split
        return text
    pieces = [text[0]]
    for before, after in zip(text, text[1:]):
        if _splits(before, after):
            pieces.append(" ")
        pieces.append(after)
    return "".join(pieces)


def normalise(text: str) -> str:
    """Return the form of ``text`` that intents are matched against.

    NFKC (full-width letters, ligatures), casefold, 'ё'→'е', punctuation → space, an emoji glued
    to a word split off it, whitespace collapsed. Emoji and other symbols stay because an intent
    may be an emoji. Never raises, even on lone surrogates, and
    normalise(normalise(x)) == normalise(x).
    """
    text = unicodedata.normalize("NFKC", text).casefold().translate(_FOLD_TABLE)
    # Casefolding or dropping a character can leave a sequence NFKC would compose again
    # ('ё' + U+0308 → 'е' + U+0308 → 'ё'); settle it so the result is a fixed point.
    for _ in range(4):
        if unicodedata.is_normalized("NFKC", text):
            break
        text = unicodedata.normalize("NFKC", text).casefold().translate(_FOLD_TABLE)
    return " ".join(_split_symbols(text).split())


@dataclass(frozen=True)
class IntentSpec:
    """What a flow author declares for one intent; every mapping is keyed by language code."""

    name: str
    keywords: Mapping[str, Sequence[str]] = field(default_factory=dict)
    patterns: Mapping[str, Sequence[str]] = field(default_factory=dict)
    examples: Mapping[str, Sequence[str]] = field(default_factory=dict)
    threshold: float | None = None


@dataclass(frozen=True)
class Match:
    """An intent found in a message: ``via`` is 'pattern', 'keyword' or 'example', the score
    runs from 0 to 100, and ``slots`` holds the named groups of a matching pattern."""

    intent: str
    score: float
    via: str
    slots: Mapping[str, str] = field(default_factory=dict)


_TYPO_MIN_CHARS = 4  # below this one letter turns a word into another ('all'/'call', 'top'/'stop')
_LONG_WORD_CHARS = 8  # from this length a word stays recognisable after two slips, not just one
_CUT_KEYWORD_CHARS = 6  # from this length a keyword missing its last letter is still that word
_INDEX_CACHE_SIZE = 256  # candidate sets come from flow states, so few distinct keys are expected
# Answers remembered per index: short texts ("hi", "thanks", "yes") come back again and again,
# long ones hardly ever, so only texts up to _REMEMBERED_CHARS are kept, and at most
# _REMEMBERED_TEXTS of them (all forgotten at once when full, like the indexes).
_REMEMBERED_TEXTS = 512
_REMEMBERED_CHARS = 64
_NOT_REMEMBERED = object()


class _Intent(NamedTuple):
    """An :class:`IntentSpec` checked and prepared: patterns compiled, phrases normalised."""

    name: str
    threshold: float
    patterns: dict[str, list[tuple[Pattern, str]]]  # each compiled, with its place
    keywords: dict[str, list[str]]
    examples: dict[str, list[str]]


class _Entry(NamedTuple):
    intent: str
    rank: int  # place in preference order: session language first, then declaration order
    threshold: float


class _Index:
    """The entries of one (candidates, language) pair, laid out for a fast :meth:`match`.

    Entries are added in preference order, so the first one found wins a tie.
    """

    def __init__(self) -> None:
        self.patterns: list[tuple[tuple[Pattern, str], _Entry]] = []
        self.exact: dict[str, _Entry] = {}
        self.exact_widths: set[int] = set()
        self.symbols: list[tuple[str, _Entry]] = []
        # choices for extractOne with their entries, grouped by what limits a match: the
        # threshold, and for keywords the words in the phrase (compared with as many of the text)
        self.typos: dict[tuple[int, float], tuple[list[str], list[_Entry]]] = {}
        self.examples: dict[float, tuple[list[str], list[_Entry]]] = {}
        #: text -> the match found for it (or None): a match depends on nothing else.
        self.answers: dict[str, Match | None] = {}

    def add_pattern(self, pattern: tuple[Pattern, str], entry: _Entry) -> None:
        self.patterns.append((pattern, entry))

    def add_keyword(self, keyword: str, entry: _Entry) -> None:
        if re.search(r"\w", keyword) is None:
            self.symbols.append((keyword, entry))
            return
        width = keyword.count(" ") + 1
        self.exact.setdefault(keyword, entry)
        self.exact_widths.add(width)
        if len(keyword) >= _TYPO_MIN_CHARS:
            choices, entries = self.typos.setdefault((width, entry.threshold), ([], []))
            choices.append(keyword)
            entries.append(entry)

    def add_example(self, example: str, entry: _Entry) -> None:
        choices, entries = self.examples.setdefault(entry.threshold, ([], []))
        choices.append(" ".join(sorted(example.split(" "))))  # see IntentMatcher
        entries.append(entry)


class IntentMatcher:
    """Find which intent a message expresses.

    Patterns (searched as :mod:`chatbot.patterns` does, which may raise PatternTimeout) are written for and matched against the *normalised* text, so
    they see lowercase words without punctuation. Their named groups become slots, and a slot's
    value is the matching stretch of the *raw* text ('call me Ann-Marie!' with
    ``call me (?P<nickname>.+)`` gives 'Ann-Marie'), falling back to the normalised value in
    the rare texts whose characters cannot be lined up one by one (combining marks).

    Keywords match as whole words or phrases, or as typos of them (see :func:`_is_typo`: one
    slip in a word of four characters or more, two from eight; a word cut short or lengthened
    is another word, not a typo). A typo scores ``fuzz.ratio`` ('helo' vs 'hello' is 89), which
    must reach the threshold, so a threshold of 100 takes a keyword's exact words only.
    A keyword made only of symbols (an emoji) matches anywhere, as people glue emoji to words.

    Examples are compared to the whole text with ``token_sort_ratio``: it forgives word order
    and small typos but, unlike ``WRatio``/``partial_ratio``/``token_set_ratio``, counts every
    missing character, so 'do' scores 24, not 90, against 'what can you do'. Example and text
    tokens are sorted ahead of time, which makes plain ``fuzz.ratio`` compute the same score.
    Counting characters lets a short word stand in for another ('who are you' scores 91 against
    'how are you'), so an example is also scored by the words it shares with the text (see
    :func:`_shared_words_score`), and the lower of the two scores counts. A text of several
    clauses ('hi, how are you?') is also compared clause by clause, the best one counting, so that
    a greeting or thanks set off from a request does not hide it.

    The best score wins; ties go to pattern, then keyword, then example, then to entries of
    the session language, then to the intent declared first. Unknown candidate names are
    ignored.
    """

    def __init__(self, intents: Iterable[IntentSpec], threshold: float = 80.0) -> None:
        self._threshold = _check_threshold("threshold", threshold)
        self._intents: dict[str, _Intent] = {}
        for spec in intents:
            where = f"intents.{spec.name}"
            if spec.name in self._intents:
                raise ValueError(f"{where}: defined more than once")
            limit = self._threshold if spec.threshold is None else _check_threshold(
                f"{where}.threshold", spec.threshold)
            patterns = {lang: [_placed(f"{where}.patterns.{lang}[{i}]", p) for i, p in items]
                        for lang, items in _entries(f"{where}.patterns", spec.patterns)}
            keywords = {lang: [_phrase(f"{where}.keywords.{lang}[{i}]", k) for i, k in items]
                        for lang, items in _entries(f"{where}.keywords", spec.keywords)}
            examples = {lang: [_phrase(f"{where}.examples.{lang}[{i}]", e) for i, e in items]
                        for lang, items in _entries(f"{where}.examples", spec.examples)}
            self._intents[spec.name] = _Intent(spec.name, limit, patterns, keywords, examples)
        self._indexes: dict[tuple[frozenset[str] | None, str], _Index] = {}

    def match(self, text: str, lang: str, candidates: Collection[str] | None = None, *,
              normalised: str | None = None) -> Match | None:
        """Return the best intent among ``candidates`` (all when None) for ``text``, or None.

        Pass ``normalised`` when the caller already has ``normalise(text)``.
        """
        index = self._index(candidates, lang)
        if normalised is not None:  # the caller's word for it: nothing to remember by the text
            return self._search(index, text, normalised)
        answers = index.answers
        # One lookup: another thread (a turn on the blocking executor) may clear the answers.
        known = answers.get(text, _NOT_REMEMBERED)
        if known is _NOT_REMEMBERED:
            known = self._search(index, text, normalise(text))
            if len(text) > _REMEMBERED_CHARS:
                return known
            if len(answers) >= _REMEMBERED_TEXTS:
                answers.clear()
            answers[text] = known
        # Slots of its own: an action may change turn.intent's, and the next turn must not see it.
        return None if known is None else Match(known.intent, known.score, known.via, dict(known.slots))

    def _search(self, index: _Index, text: str, norm: str) -> Match | None:
        for (pattern, where), entry in index.patterns:
            found = search(pattern, norm, where)
            if found:
                return Match(entry.intent, 100.0, "pattern", _slots(found, text, norm))
        if not norm:
            return None
        tokens = norm.split(" ")
        exact = None
        for width in index.exact_widths:
            for window in _windows(tokens, width):
                entry = index.exact.get(window)
                if entry is not None and (exact is None or entry.rank < exact.rank):
                    exact = entry
        for symbol, entry in index.symbols:
            if symbol in norm and (exact is None or entry.rank < exact.rank):
                exact = entry
        if exact is not None:
            return Match(exact.intent, 100.0, "keyword", {})

        best_key: tuple[float, int, int] = (-1.0, 0, 0)
        best: _Entry | None = None
        for (width, threshold), (choices, entries) in index.typos.items():
            for window in _windows(tokens, width):
                if len(window) < _TYPO_MIN_CHARS:
                    continue
                cutoff = max(threshold, best_key[0])
                found = process.extractOne(window, choices, scorer=fuzz.ratio, score_cutoff=cutoff)
                if found is not None and not _is_typo(window, found[0]):
                    found = _next_typo(window, choices, cutoff)
                if found is not None:
                    key = (found[1], 1, -entries[found[2]].rank)
                    if key > best_key:
                        best_key, best = key, entries[found[2]]
        if index.examples:
            # The whole text, and each of its clauses: a greeting or thanks set off by punctuation
            # ('hi, how are you?', 'what time is it? thanks') does not hide the request.
            texts = [tokens] + [clause for clause in _clauses(text) if clause != tokens]
            for threshold, (choices, entries) in index.examples.items():
                for words in texts:
                    sorted_text = " ".join(sorted(words))
                    cutoff = max(threshold, best_key[0])
                    found = process.extractOne(sorted_text, choices, scorer=fuzz.ratio, score_cutoff=cutoff)
                    if found is not None:
                        found = _best_example(words, sorted_text, choices, cutoff, found)
                    if found is not None:
                        key = (found[0], 0, -entries[found[1]].rank)
                        if key > best_key:
                            best_key, best = key, entries[found[1]]
        if best is None:
            return None
        return Match(best.intent, best_key[0], "keyword" if best_key[1] else "example", {})

    def _index(self, candidates: Collection[str] | None, lang: str) -> _Index:
        names = None if candidates is None else frozenset(candidates)
        index = self._indexes.get((names, lang))
        if index is None:
            if len(self._indexes) >= _INDEX_CACHE_SIZE:
                self._indexes.clear()
            index = self._indexes[(names, lang)] = self._build_index(names, lang)
        return index

    def _build_index(self, names: frozenset[str] | None, lang: str) -> _Index:
        index = _Index()
        chosen = [intent for name, intent in self._intents.items() if names is None or name in names]
        rank = 0
        for session_language in (True, False):
            for intent in chosen:
                for add, per_lang in ((index.add_pattern, intent.patterns),
                                      (index.add_keyword, intent.keywords),
                                      (index.add_example, intent.examples)):
                    for item_lang, items in per_lang.items():
                        if (item_lang == lang) == session_language:
                            for item in items:
                                rank += 1
                                add(item, _Entry(intent.name, rank, intent.threshold))
        return index


# The searches of IntentMatcher._search first ask rapidfuzz for the best choice alone, which is
# cheaper than the list of all above the cutoff: the two functions below make that list only
# when the best one is refused. Choices of a group are in preference order, and rapidfuzz puts
# the first of equal scores first.

def _next_typo(window: str, choices: list[str], cutoff: float) -> tuple[str, float, int] | None:
    """When the closest choice is another word ('logo' for 'logout'), the best-scoring one that
    ``window`` is a typo of (see :func:`_is_typo`), or None."""
    return next((other for other in process.extract(window, choices, scorer=fuzz.ratio,
                                                    score_cutoff=cutoff, limit=None)
                 if _is_typo(window, other[0])), None)


def _best_example(tokens: list[str], sorted_text: str, choices: list[str], cutoff: float,
                   closest: tuple[str, float, int]) -> tuple[float, int] | None:
    """(score, index) of the example that best matches the text, given the ``closest`` one by
    characters, if it scores ``cutoff`` or more.

    An example's score is its character score (``fuzz.ratio`` of the sorted words), lowered to
    its word score (:func:`_shared_words_score`) when that is lower.
    """
    example, score, i = closest
    if _shared_words_score(tokens, example.split(" ")) >= score:
        return score, i  # not lowered, so no example further down can beat it
    scored = [(min(score, _shared_words_score(tokens, example.split(" "))), -i)
              for example, score, i in process.extract(sorted_text, choices, scorer=fuzz.ratio,
                                                       score_cutoff=cutoff, limit=None)]
    score, minus_i = max(scored)
    return (score, -minus_i) if score >= cutoff else None


def _edits_allowed(word: str) -> int:
    return 2 if len(word) >= _LONG_WORD_CHARS else 1


def _within_edits(word: str, other: str) -> bool:
    """Whether ``word`` turns into ``other`` by the slips a typist makes: a letter wrong, missing
    or extra, or two neighbours swapped ('yuo'); one such slip, two for long words."""
    allowed = _edits_allowed(other)
    return OSA.distance(word, other, score_cutoff=allowed) <= allowed


def _is_typo(text: str, keyword: str) -> bool:
    """Whether ``text`` (as many words as ``keyword``) is ``keyword`` mistyped: word for word,
    each the same or a typo of its own (see :func:`_is_word_typo`), so in 'log ot' for 'log out'
    no short word may differ."""
    if " " not in keyword:
        return _is_word_typo(text, keyword)
    return all(word == wanted or _is_word_typo(word, wanted)
               for word, wanted in zip(text.split(" "), keyword.split(" ")))


def _is_word_typo(word: str, keyword: str) -> bool:
    """Whether ``word`` is ``keyword`` mistyped, not another word.

    Short words are not guessed at, as one slip turns them into other words ('top'/'stop').
    Nor is a word that is the keyword cut short or with letters added at its end or start: that
    is mostly another word ('logo'/'logout', 'hell'/'hello', 'sign'/'signin', 'signing'/'signin',
    'registered'/'register', 'unregister'/'register'). A repeated first or last letter is still
    a typo ('hhello', 'hellooo', 'okayy'), and so is a missing last letter of a keyword of six
    letters or more ('goodby', 'mornin').
    """
    if len(word) < _TYPO_MIN_CHARS or len(keyword) < _TYPO_MIN_CHARS:
        return False
    last = keyword[-1]
    if word[-1] == last and word.rstrip(last) == keyword.rstrip(last):
        return True
    if keyword.startswith(word) and len(keyword) - len(word) == 1 and len(keyword) >= _CUT_KEYWORD_CHARS:
        return True  # the last letter of a long word missed ('goodby', 'mornin', 'thank')
    if word.startswith(keyword) or keyword.startswith(word):
        return False
    first = keyword[0]
    if word.endswith(keyword) and word.lstrip(first) != keyword.lstrip(first):
        return False  # letters added at its start: 'unregister', 'deregister' (but 'rregister' is a typo)
    return _within_edits(word, keyword)


def _shared_words_score(words: list[str], example: list[str]) -> float:
    """How much of ``words`` and ``example`` is words they share, 0 to 100, by characters.

    A word of the example counts as shared when the text has it, or has it within one slip
    ('yuo' for 'you', 's' for 'is' as in "what's"). Unlike a score by characters, this does not
    let one word stand in for another because they share letters ('who'/'how').
    """
    unused = list(words)
    shared = 0
    missing = []
    for wanted in example:
        if wanted in unused:
            unused.remove(wanted)
            shared += 2 * len(wanted)
        else:
            missing.append(wanted)
    for wanted in missing:  # after the exact ones, so a typo does not take a word they need
        for word in unused:
            if _within_edits(word, wanted):
                unused.remove(word)
                shared += len(word) + len(wanted)
                break
    total = sum(map(len, words)) + sum(map(len, example))
    return 100.0 * shared / total if total else 0.0


# What ends a clause: a greeting or thanks is set off from a request by one of these.
_CLAUSE_END = re.compile(r"[,;:.!?\u2026\u2013\u2014\n\u3001\u3002\uff01\uff0c\uff1a\uff1b\uff1f]+")
_MAX_CLAUSES = 8  # a long text with many clauses is no example's whole text anyway


def _clauses(text: str) -> list[list[str]]:
    """The normalised words of each clause of ``text`` (raw), when it has more than one."""
    parts = _CLAUSE_END.split(text, maxsplit=_MAX_CLAUSES)[:_MAX_CLAUSES]
    words = [normalise(part) for part in parts]
    words = [part.split(" ") for part in words if part]
    return words if len(words) > 1 else []


def _windows(tokens: list[str], width: int) -> Iterable[str]:
    if width == 1:
        return tokens
    return (" ".join(tokens[i:i + width]) for i in range(len(tokens) - width + 1))


def _check_threshold(where: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise ValueError(f"{where}: expected a number from 0 to 100, got {value!r}")
    return float(value)


def _entries(where: str, per_lang: Mapping[str, Sequence[str]]) -> Iterable[tuple[str, list]]:
    if not isinstance(per_lang, Mapping):
        raise ValueError(f"{where}: expected a mapping of language to list, got {type(per_lang).__name__}")
    for lang, items in per_lang.items():
        if isinstance(items, str) or not isinstance(items, Sequence):
            raise ValueError(f"{where}.{lang}: expected a list of strings, got {type(items).__name__}")
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise ValueError(f"{where}.{lang}[{i}]: expected a string, got {type(item).__name__}")
        yield lang, list(enumerate(items))


def _compile(where: str, pattern: str) -> Pattern:
    try:
        return compile_pattern(pattern)
    except PatternError as err:
        raise ValueError(f"{where}: invalid regular expression: {err}") from None


def _placed(where: str, pattern: str) -> tuple[Pattern, str]:
    return _compile(where, pattern), where


def _phrase(where: str, phrase: str) -> str:
    folded = normalise(phrase)
    if not folded:
        raise ValueError(f"{where}: {phrase!r} is empty once punctuation is removed")
    return folded


def _slots(found: PatternMatch, raw: str, norm: str) -> dict[str, str]:
    """Named groups of ``found``, each taken from the raw text when the two line up."""
    origins = _origins(raw, norm)
    slots = {}
    for name, value in found.groupdict().items():
        if value is None:
            continue
        start, end = found.span(name)
        # A space of the normalised text stands where the next raw character starts: spaces at the
        # ends of a group would take raw characters from outside it ('Ann 2' of 'Ann 25').
        while start < end and norm[start] == " ":
            start += 1
        while end > start and norm[end - 1] == " ":
            end -= 1
        if origins is not None and end > start:
            value = raw[slice(*_bracketed(raw, norm, origins, start, end))].strip()
        slots[name] = value
    return slots


# Brackets and quotes, opening → closing. Punctuation at the ends of a group is not part of its
# value ('Ann-Marie!' gives 'Ann-Marie'), except the other half of a pair the value holds one of:
# 'call me Ann (the great)' gives 'Ann (the great)', not 'Ann (the great'.
_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">", "«": "»", "‹": "›", "“": "”", "„": "“", "‘": "’",
          "「": "」", "『": "』", '"': '"'}
_CLOSING = frozenset(_PAIRS.values())


def _bracketed(raw: str, norm: str, origins: list[int], start: int, end: int) -> tuple[int, int]:
    """The raw span of ``norm[start:end]``, taking in the brackets and quotes that close (or
    open) the ones it holds from the punctuation around it."""
    first, last = origins[start], origins[end - 1] + 1
    opened: list[str] = []  # openers not closed yet, innermost last
    unopened: list[str] = []  # closers with no opener, in order
    for char in raw[first:last]:
        char = unicodedata.normalize("NFKC", char)
        if opened and char == _PAIRS[opened[-1]]:
            opened.pop()
        elif char in _PAIRS:
            opened.append(char)
        elif char in _CLOSING:
            unopened.append(char)
    # The raw characters next to the group that normalising dropped: punctuation and spaces.
    previous = start - 1
    while previous >= 0 and norm[previous] == " ":
        previous -= 1
    before = origins[previous] + 1 if previous >= 0 else 0
    after = origins[end] if end < len(norm) else len(raw)
    for i in range(last, after):
        if not opened:
            break
        if unicodedata.normalize("NFKC", raw[i]) == _PAIRS[opened[-1]]:
            opened.pop()
            last = i + 1
    for i in range(first - 1, before - 1, -1):
        if not unopened:
            break
        if _PAIRS.get(unicodedata.normalize("NFKC", raw[i])) == unopened[0]:
            unopened.pop(0)
            first = i
    return first, last


def _origins(raw: str, norm: str) -> list[int] | None:
    """For each character of ``norm``, the index of the raw character it came from."""
    chars: list[str] = []
    origins: list[int] = []
    space = False
    for i, char in enumerate(raw):
        for piece in unicodedata.normalize("NFKC", char).casefold().translate(_FOLD_TABLE):
            if piece.isspace():
                space = bool(chars)
                continue
            if chars and not space and _splits(chars[-1], piece):
                space = True  # normalise() splits an emoji off the word it is glued to
            if space:
                chars.append(" ")
                origins.append(i)
                space = False
            chars.append(piece)
            origins.append(i)
    return origins if "".join(chars) == norm else None


_NUMBER = re.compile(r"(?:(?<![\w.,+\-\u2212])([-+\u2212]))?(\d+)(?:[.,](\d+))?")
# The top-level domain: letters, or its ASCII (punycode) form, 'xn--p1ai' for 'рф'.
_EMAIL = re.compile(r"(?<![\w.+-])([\w.+-]+)@((?:[^\W_](?:[\w-]*[^\W_])?\.)+(?:xn--[^\W_](?:[\w-]*[^\W_])?"
                    r"|[^\W\d_]{2,}))")
_WORD_START = re.compile(r"\w")
_KINDS = ("email", "number", "regex", "text", "word")


def _first_word(text: str) -> str | None:
    """The first run of letters, digits and '_', with inner '-' and the combining marks a letter
    may carry (Devanagari vowel signs and virama, a separately typed accent), which \\w is not."""
    found = _WORD_START.search(text)
    if found is None:
        return None
    end = start = found.start()
    while end < len(text):
        char = text[end]
        if _is_word_char(char) or unicodedata.category(char)[0] == "M":
            end += 1
        elif char == "-" and end + 1 < len(text) and _is_word_char(text[end + 1]):
            end += 1
        else:
            break
    return text[start:end]


def is_email(text: str) -> bool:
    """Whether the whole of ``text`` (spaces around aside) is one e-mail address."""
    return _EMAIL.fullmatch(unicodedata.normalize("NFKC", text).strip()) is not None


def extract(kind: str, text: str, *, pattern: str | None = None,
            group: int | str | None = None) -> str | None:
    """Capture a slot value of ``kind`` from raw user text; None when there is no valid value.

    Works on the raw text because values keep their case ('Ann', 'John.Doe@…'):
    'text' the stripped text; 'number' the first number, written plainly ('-3.5' for '−3,50');
    'email' the first address, its domain lowercased; 'word' the first word (letters, digits,
    '_', inner '-'); 'regex' a search for ``pattern`` (see :mod:`chatbot.patterns`: it raises
    PatternTimeout when the search takes too long), its ``group`` or else the first group, or
    else the whole match. An empty match counts as no value.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown capture kind {kind!r} (expected one of: {', '.join(_KINDS)})")
    if kind != "regex" and (pattern is not None or group is not None):
        raise ValueError(f"capture kind {kind!r}: takes no pattern or group")
    if kind == "text":
        return text.strip() or None
    if kind == "word":
        return _first_word(text)
    if kind == "number":
        # NFKC turns full-width digits into ASCII; other scripts' digits are read by value.
        found = _NUMBER.search(unicodedata.normalize("NFKC", text))
        if not found:
            return None
        sign, whole, fraction = found.groups()
        whole = "".join(str(unicodedata.decimal(d)) for d in whole).lstrip("0") or "0"
        fraction = "".join(str(unicodedata.decimal(d)) for d in fraction or "").rstrip("0")
        number = f"{whole}.{fraction}" if fraction else whole
        return f"-{number}" if sign in ("-", "\u2212") and number != "0" else number
    if kind == "email":
        found = _EMAIL.search(unicodedata.normalize("NFKC", text))
        return f"{found.group(1)}@{found.group(2).lower()}" if found else None
    if pattern is None:
        raise ValueError("capture kind 'regex': needs a pattern")
    found = search(_compile("capture pattern", pattern), text, "capture pattern")
    if not found:
        return None
    if group is None:
        group = 1 if found.re.groups else 0
    try:
        value = found.group(group)
    except IndexError:
        raise ValueError(f"capture pattern {pattern!r}: has no group {group!r}") from None
    return value or None
