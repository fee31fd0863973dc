"""Reading a YAML document into specs while collecting problems instead of stopping.

`Reader` checks keys, types, names and messages of one document and appends
a FlowError (file, line, key path, message) for each problem it meets, so a
file is reported completely in one pass.
"""

from __future__ import annotations

from typing import Any

from rapidfuzz import fuzz, process

from chatbot.dialogs.model import Message
from chatbot.dialogs.yamlsource import LineDict, LineList, RefusedText, yaml_kind
from chatbot.errors import FlowError


def did_you_mean(word: str, choices) -> str:
    # rapidfuzz, not difflib: a flow of thousands of states with a mistake in each would
    # otherwise take minutes to check (every mistake is compared with every state).
    close = process.extractOne(str(word), [str(c) for c in choices], scorer=fuzz.ratio, score_cutoff=60)
    return f" (did you mean {close[0]!r}?)" if close else ""


def key_lines(value: Any, prefix: str = "", seen: set[int] | None = None) -> dict[str, int]:
    """The line of every key path in a document: `transitions[2].dest` → 14.

    A node shared through a YAML alias is walked once (its other paths fall
    back to their parent's line), so nested aliases cannot make this explode.
    """
    seen = set() if seen is None else seen
    lines: dict[str, int] = {}
    if isinstance(value, (LineDict, LineList)):
        if id(value) in seen:
            return lines
        seen.add(id(value))
    if isinstance(value, LineDict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            lines[path] = value.line_of(key)
            lines.update(key_lines(item, path, seen))
    elif isinstance(value, LineList):
        for index, item in enumerate(value):
            path = f"{prefix}[{index}]"
            lines[path] = value.line_of(index)
            lines.update(key_lines(item, path, seen))
    return lines


class Reader:
    """Reads one document, appending problems instead of stopping at the first."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[FlowError] = []
        #: See FlowSpec.positions.
        self.positions: dict[str, tuple[int, ...]] = {}

    def problem(self, line: int | None, key: str, message: str) -> None:
        self.problems.append(FlowError(self.path, line, key, message))

    def kept(self, key: str, indexes: list[int], total: int) -> None:
        """Remember where the items kept from the list at `key` were, when some were left out."""
        if len(indexes) < total:
            self.positions[key] = tuple(indexes)

    def check_keys(self, mapping: LineDict, allowed: tuple[str, ...], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                path = f"{where}.{key}" if where else str(key)
                self.problem(mapping.line_of(key), path, f"unknown key{did_you_mean(key, allowed)}")

    def typed(self, value: Any, kind: type | tuple[type, ...], line: int, key: str, expected: str) -> bool:
        if isinstance(value, RefusedText):  # reported where it was read, and unusable whatever was expected
            return False
        if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)):
            return True
        self.problem(line, key, f"expected {expected}, got {yaml_kind(value)}")
        return False

    def names(self, value: Any, line: int, key: str) -> tuple[str, ...]:
        """A name or a list of names (callbacks, sources)."""
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        names, indexes = [], []
        for index, item in enumerate(items):
            item_line = value.line_of(index) if isinstance(value, LineList) else line
            item_key = f"{key}[{index}]" if isinstance(value, list) else key
            if self.typed(item, str, item_line, item_key, "a name"):
                names.append(item)
                indexes.append(index)
        self.kept(key, indexes, len(items))
        return tuple(names)

    def message(self, value: Any, line: int, key: str, languages: tuple[str, ...]) -> Message | None:
        """`text`, `[variants]` or `{lang: text | [variants]}`."""
        if value is None:
            return None
        if isinstance(value, (str, list)):
            if len(languages) > 1:
                self.problem(line, key, f"expected a text per language ({', '.join(languages)}), got one text")
                return None
            variants = self.variants(value, line, key)
            return {languages[0]: variants} if variants else None
        if not self.typed(value, dict, line, key, "a text or a mapping of language to text"):
            return None
        message = {}
        for lang, text in value.items():
            sub_line = value.line_of(lang)
            if lang not in languages:
                self.problem(sub_line, f"{key}.{lang}",
                             f"language not declared in 'languages' ({', '.join(languages)})")
                continue
            variants = self.variants(text, sub_line, f"{key}.{lang}")
            if variants:
                message[lang] = variants
        for lang in languages:
            if lang not in message and not any(p.key.startswith(f"{key}.{lang}") for p in self.problems):
                self.problem(line, key, f"missing text in language '{lang}'")
        return message

    def variants(self, value: Any, line: int, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,) if self._shown(value, line, key) else ()
        if isinstance(value, list) and value:
            texts, indexes = [], []
            for index, item in enumerate(value):
                item_line, item_key = value.line_of(index), f"{key}[{index}]"
                if self.typed(item, str, item_line, item_key, "a text") and self._shown(item, item_line, item_key):
                    texts.append(item)
                    indexes.append(index)
            self.kept(key, indexes, len(value))
            return tuple(texts)
        self.problem(line, key, "expected a text or a non-empty list of variants")
        return ()

    def _shown(self, text: str, line: int, key: str) -> bool:
        """A text a person would see something of: an empty reply or a blank button says nothing."""
        if text.strip():
            return True
        self.problem(line, key, "empty text")
        return False


def each_mapping(reader: Reader, value: Any, line: int, key: str, what: str):
    """Yield (index, item, where) for the mappings of a list, reporting the rest."""
    if value is None:
        return
    if not isinstance(value, list):
        reader.problem(line, key, f"expected a list of {what}, got {yaml_kind(value)}")
        return
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        if reader.typed(item, dict, value.line_of(index), where, f"a mapping ({what[:-1]})"):
            yield index, item, where


