"""YAML reading that remembers where every key and list item came from.

Flow errors must name the file, the line and the key path, so the loaded
mappings and sequences carry the line of each of their entries.  Duplicate
keys, which PyYAML silently merges, are reported instead.

Only `true` and `false` are booleans (as in YAML 1.2): flows name intents and
buttons `yes`, `no`, `on` and `off`, which YAML 1.1 would turn into booleans.

Whatever a file holds is reported, never raised: control characters, written
or escaped (`"\0"`), lone surrogates, nesting deep enough to exhaust Python's
recursion, and the tags that would build values without lines (`!!omap`,
`!!pairs`, `!!set`).
"""

from __future__ import annotations

import bisect
import re

from typing import Any

import yaml

from chatbot.errors import FlowError

#: Far deeper than any flow needs, and shallow enough that building and walking a
#: document (construction, key paths, checks) stays well inside Python's recursion limit.
MAX_DEPTH = 50
#: A line break as editors and `grep -n` count them.  YAML also counts U+0085, U+2028 and U+2029,
#: which a quoted text may hold, so lines come from a mark's character index, not its `line`.
LINE_BREAK_RE = re.compile(r"\r\n|[\n\r]")
#: What an escape in a quoted text can write but a text may not hold: control characters other than
#: tab and line break (PyYAML refuses them written out, not escaped) and lone surrogates.  Either
#: breaks every turn that says the text: terminals and databases cannot take them.
REFUSED_CHAR_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def line_starts(text: str) -> list[int]:
    """The index of the first character of each line of `text`."""
    return [0] + [match.end() for match in LINE_BREAK_RE.finditer(text)]


def line_at(starts: list[int], index: int) -> int:
    """The line (from 1) of the character at `index`, given the `line_starts` of its text."""
    return bisect.bisect_right(starts, index)


class RefusedText(str):
    """A text holding a character it may not (see REFUSED_CHAR_RE), already reported where it was read."""

    def refusal(self) -> str:
        char = REFUSED_CHAR_RE.search(self).group()
        kind = "lone surrogate" if "\ud800" <= char <= "\udfff" else "control character"
        return f"the {kind} U+{ord(char):04X}"


class LineDict(dict):
    """A mapping that knows the line of each of its keys, and the keys it had twice."""

    line: int = 0
    key_lines: dict[Any, int]
    #: (line, key or None, message) of each key left out (a duplicate, one that is not a scalar, a
    #: RefusedText), and of each value kept but refused (a RefusedText).
    rejected: list[tuple[int, Any, str]]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A sequence that knows the line of each of its items, and the items it refused."""

    line: int = 0
    item_lines: list[int]
    #: (line, index, message) of each item kept but refused: a RefusedText.
    rejected: list[tuple[int, int, str]]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


def yaml_kind(value: Any) -> str:
    """What a YAML value is, in the words of a flow author: 'a list', not 'LineList'."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"  # dates and the like


class _Loader(yaml.SafeLoader):
    """A safe loader building LineDict/LineList and collecting duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.line_starts = line_starts(stream)
        self.depth = 0
        #: The height of each composed node, counting what its aliases bring in.
        self.heights: dict[int, int] = {}

    def compose_node(self, parent, index):
        """Refuse nesting deeper than MAX_DEPTH, written out or built up through aliases.

        The written depth is checked on the way down, before the recursion gets
        deep; the height on the way up, because a chain of anchors, each used in
        the next, nests deeply in a file that is itself flat.
        """
        alias = self.check_event(yaml.AliasEvent)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                self._too_deep(self.peek_event().start_mark)
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if alias or isinstance(node, yaml.ScalarNode):  # a scalar's height is 1
            return node
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = [child for pair in node.value for child in pair]
        height = 1 + max((self.heights.get(id(child), 1) for child in children), default=0)
        if height > MAX_DEPTH:
            self._too_deep(node.start_mark)
        self.heights[id(node)] = height
        return node

    def mark_line(self, mark) -> int:
        return line_at(self.line_starts, mark.index)

    @staticmethod
    def _too_deep(mark) -> None:
        raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)

    def construct_unsupported(self, node: yaml.Node):
        """`!!omap`, `!!pairs` and `!!set` build lists and sets that know no lines."""
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise yaml.constructor.ConstructorError(None, None, f"{tag} is not supported: write a plain list or mapping",
                                                node.start_mark)

    def construct_text(self, node: yaml.ScalarNode) -> str:
        """A text, as a RefusedText when it holds a character it may not."""
        text = self.construct_scalar(node)
        if REFUSED_CHAR_RE.search(text) is None:
            return text
        try:  # JSON escapes a character past U+FFFF as a surrogate pair ("\ud83d\ude00"): read it as one
            text = text.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:  # a lone surrogate
            pass
        return RefusedText(text) if REFUSED_CHAR_RE.search(text) else text

    def construct_line_mapping(self, node: yaml.MappingNode) -> LineDict:
        mapping = LineDict()
        mapping.line = self.mark_line(node.start_mark)
        mapping.key_lines = {}
        mapping.rejected = []
        merged: list[LineDict] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                merged += self._merge_sources(node, value_node, mapping)
                continue
            key = self.construct_object(key_node, deep=True)
            line = self.mark_line(key_node.start_mark)
            if isinstance(key, RefusedText):
                mapping.rejected.append((line, None, f"a key may not hold {key.refusal()}"))
                continue
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                mapping.rejected.append((line, None, f"a key must be a name, got {yaml_kind(key)}"))
                continue
            if key in mapping:
                first = mapping.key_lines[key]
                mapping.rejected.append((line, key, f"duplicate key (first defined on line {first})"))
                continue
            mapping[key] = value = self.construct_object(value_node, deep=True)
            mapping.key_lines[key] = line
            if isinstance(value, RefusedText):
                mapping.rejected.append((self.mark_line(value_node.start_mark), key,
                                         f"a text may not hold {value.refusal()}"))
        # As YAML has it, keys written here override merged ones, and an earlier merged mapping
        # overrides a later one; none of that is a duplicate.
        for source in merged:
            for key, value in source.items():
                if key not in mapping:
                    mapping[key] = value
                    mapping.key_lines[key] = source.line_of(key)
        return mapping

    def _merge_sources(self, node: yaml.MappingNode, value_node: yaml.Node, mapping: LineDict) -> list[LineDict]:
        """The mappings a `<<` key merges in: one mapping, or a list of them.

        An anchored mapping was built, and its own problems kept, where it was written; one
        written right after the `<<` is nowhere else, so its problems become the mapping's.
        """
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        merged = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                expected = "a mapping" if source is not value_node else "a mapping or list of mappings"
                raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                        f"expected {expected} for merging, but found {source.id}",
                                                        source.start_mark)
            inline = source not in self.constructed_objects
            merged.append(self.construct_object(source, deep=True))
            if inline:
                mapping.rejected += merged[-1].rejected
        return merged

    def construct_line_sequence(self, node: yaml.SequenceNode) -> LineList:
        sequence = LineList(self.construct_object(child, deep=True) for child in node.value)
        sequence.line = self.mark_line(node.start_mark)
        sequence.item_lines = [self.mark_line(child.start_mark) for child in node.value]
        sequence.rejected = [(sequence.item_lines[index], index, f"a text may not hold {item.refusal()}")
                             for index, item in enumerate(sequence) if isinstance(item, RefusedText)]
        return sequence


BOOL_TAG = "tag:yaml.org,2002:bool"
MERGE_TAG = "tag:yaml.org,2002:merge"
VALUE_TAG = "tag:yaml.org,2002:value"
STR_TAG = "tag:yaml.org,2002:str"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_line_mapping)
# A plain `=` or `<<` is a text wherever it is not a merge key: PyYAML has no constructor for their tags.
for _tag in (STR_TAG, VALUE_TAG, MERGE_TAG):
    _Loader.add_constructor(_tag, _Loader.construct_text)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _Loader.construct_line_sequence)
for _unsupported in ("omap", "pairs", "set"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_unsupported}", _Loader.construct_unsupported)


def _rejected_keys(value: Any, path: str, prefix: str = "", seen: set[int] | None = None) -> list[FlowError]:
    """The keys construction left out and the texts it refused, named by their key path (`states[0].say`).

    A node shared through a YAML alias is walked once, so that a file of nested
    aliases cannot make the walk explode.
    """
    seen = set() if seen is None else seen
    problems: list[FlowError] = []
    if isinstance(value, (LineDict, LineList)):
        if id(value) in seen:
            return problems
        seen.add(id(value))
    if isinstance(value, LineDict):
        for line, key, message in value.rejected:
            where = prefix if key is None else (f"{prefix}.{key}" if prefix else str(key))
            problems.append(FlowError(path, line, where, message))
        for key, item in value.items():
            problems += _rejected_keys(item, path, f"{prefix}.{key}" if prefix else str(key), seen)
    elif isinstance(value, LineList):
        problems += [FlowError(path, line, f"{prefix}[{index}]", message) for line, index, message in value.rejected]
        for index, item in enumerate(value):
            problems += _rejected_keys(item, path, f"{prefix}[{index}]", seen)
    return problems


def load_yaml(text: str, path: str) -> tuple[Any, list[FlowError]]:
    """Parse one YAML document; return it with the problems found on the way.

    A syntax error is returned as the only problem (with the document None)
    rather than raised, so that a folder of flows is reported in one pass.
    """
    try:
        loader = _Loader(text)  # PyYAML checks the characters of a whole text up front
    except yaml.reader.ReaderError as err:
        line = line_at(line_starts(text), err.position)
        return None, [FlowError(path, line, "", f"yaml syntax: unacceptable character #x{err.character:04x}: "
                                                f"{err.reason}")]
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = loader.mark_line(mark) if mark else None
        reason = err.problem or err.context or "invalid yaml"
        if err.problem and err.context and err.context.startswith("expected"):  # e.g. a second document
            reason = f"{err.context}, {err.problem}"
        return None, [FlowError(path, line, "", f"yaml syntax: {reason}")]
    except yaml.YAMLError as err:
        return None, [FlowError(path, None, "", f"yaml syntax: {err}")]
    finally:
        loader.dispose()
    return document, sorted(_rejected_keys(document, path), key=lambda problem: problem.line)
