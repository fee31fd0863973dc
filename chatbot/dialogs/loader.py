"""Turning one flow file into a FlowSpec, reporting every shape problem.

This module checks the shape of a file (known keys, types, required keys);
`validate` checks the meaning of a whole set of flows (states, triggers,
actions, reachability).  Both add to the same list of FlowErrors.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Callable

from chatbot.dialogs.model import (
    ACCESS_KINDS,
    INPUT_KINDS,
    TEXT_TRIGGER,
    Button,
    Capture,
    Entry,
    FlowSpec,
    StateSpec,
    TransitionSpec,
)
from chatbot.dialogs.reader import Reader, did_you_mean, each_mapping, key_lines
from chatbot.dialogs.yamlsource import LineDict, LineList, load_yaml, yaml_kind
from chatbot.errors import FlowError
from chatbot.patterns import Pattern, PatternError, compile_pattern
from chatbot.text import IntentSpec, normalise

FLOW_KEYS = ("name", "description", "languages", "initial", "fallback_state", "fallback", "help", "entry",
             "intents", "states", "transitions")
ENTRY_KEYS = ("command", "access", "title")
STATE_KEYS = ("name", "say", "buttons", "input", "capture", "on_enter", "goto", "final")
TRANSITION_KEYS = ("trigger", "source", "dest", "conditions", "unless", "before", "after", "say")
INTENT_KEYS = ("keywords", "patterns", "examples", "threshold")
CAPTURE_KEYS = ("slot", "kind", "pattern", "group", "validate", "invalid")
CAPTURE_KINDS = ("email", "number", "regex", "text", "word")
BUTTON_KEYS = ("label", "action")
#: Flow and state names are stored with each session (in columns of 128 characters).
MAX_NAME_CHARS = 64
# Each is used with `fullmatch`: `$` would also match before a final line break ("f\n").
NAME_RE = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_NAME_CHARS - 1}}}")
NAME_RULE = f"letters, digits, _, at most {MAX_NAME_CHARS} characters"
#: A button's action and a trigger: a name, or a global action with its argument (`lang:ru`, `flow:pizza`).
ACTION_RE = re.compile(rf"(?:(?:lang|flow):)?{NAME_RE.pattern}")
ACTION_RULE = f"{NAME_RULE}, maybe after 'lang:' or 'flow:'"
COMMAND_RE = re.compile(r"/[a-z][a-z0-9_]*")
LANG_RE = re.compile(r"[a-z]{2,3}")


def flow_version(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def parse_flow(text: str, path: str) -> tuple[FlowSpec | None, list[FlowError]]:
    """Parse the text of one flow file; return the flow (or None) and its problems."""
    document, problems = load_yaml(text, path)
    reader = Reader(path)
    reader.problems.extend(problems)
    if document is None and not problems:
        reader.problem(1, "", "empty file")
    if document is None:
        return None, reader.problems
    if not isinstance(document, LineDict):
        reader.problem(1, "", f"expected a mapping at the top, got {yaml_kind(document)}")
        return None, reader.problems
    flow = _parse_document(reader, document, Path(path).stem, flow_version(text))
    return flow, reader.problems


def _parse_document(reader: Reader, doc: LineDict, stem: str, version: str) -> FlowSpec | None:
    reader.check_keys(doc, FLOW_KEYS, "")
    name = doc.get("name", stem)
    if reader.typed(name, str, doc.line_of("name"), "name", "a text") and not NAME_RE.fullmatch(name):
        reader.problem(doc.line_of("name"), "name", f"invalid flow name {name!r} ({NAME_RULE})")
    languages = _languages(reader, doc)
    _required(reader, doc, "initial", "a state name")
    _required(reader, doc, "states", "a list of states")
    initial = doc.get("initial")
    if initial is not None:
        reader.typed(initial, str, doc.line_of("initial"), "initial", "a state name")
    fallback_state = doc.get("fallback_state", initial)
    if "fallback_state" in doc:
        reader.typed(fallback_state, str, doc.line_of("fallback_state"), "fallback_state", "a state name")
    states = _states(reader, doc.get("states"), doc.line_of("states"), languages)
    transitions = _transitions(reader, doc.get("transitions", LineList()), doc.line_of("transitions"),
                               languages)
    intents = _intents(reader, doc.get("intents"), doc.line_of("intents"), languages)
    line = doc.line_of
    # Read every part before giving up on the flow, so that all its problems are reported at once.
    fallback = reader.message(doc.get("fallback"), line("fallback"), "fallback", languages)
    help_ = reader.message(doc.get("help"), line("help"), "help", languages)
    description = doc.get("description", "")
    if not reader.typed(description, str, line("description"), "description", "a text"):
        description = ""
    entry = _entry(reader, doc.get("entry"), line("entry"), languages)
    if not isinstance(name, str) or not isinstance(initial, str) or states is None:
        return None
    return FlowSpec(
        name=name,
        path=reader.path,
        version=version,
        languages=languages,
        initial=initial,
        fallback_state=fallback_state if isinstance(fallback_state, str) else initial,
        states=states,
        transitions=transitions,
        intents=intents,
        fallback=fallback,
        help=help_,
        description=description,
        entry=entry,
        lines=key_lines(doc),
        positions=reader.positions,
    )


def _required(reader: Reader, doc: LineDict, key: str, expected: str) -> None:
    """A required key left empty (`initial:`) is as good as missing."""
    if key not in doc:
        reader.problem(doc.line, key, "required key is missing")
    elif doc[key] is None:
        reader.problem(doc.line_of(key), key, f"expected {expected}, got nothing")


def _languages(reader: Reader, doc: LineDict) -> tuple[str, ...]:
    value = doc.get("languages")
    line = doc.line_of("languages")
    if value is None:
        reader.problem(doc.line, "languages", "required key is missing")
        return ("en",)
    if not isinstance(value, list) or not value:
        reader.problem(line, "languages", "expected a non-empty list of language codes")
        return ("en",)
    langs = []
    for index, lang in enumerate(value):
        if not isinstance(lang, str) or not LANG_RE.fullmatch(lang):
            reader.problem(value.line_of(index), f"languages[{index}]", f"invalid language code {lang!r}")
        elif lang in langs:
            reader.problem(value.line_of(index), f"languages[{index}]", f"duplicate language '{lang}'")
        else:
            langs.append(lang)
    return tuple(langs) or ("en",)


def _entry(reader: Reader, value: Any, line: int, languages) -> Entry | None:
    if value is None or not reader.typed(value, dict, line, "entry", "a mapping"):
        return None
    reader.check_keys(value, ENTRY_KEYS, "entry")
    command = value.get("command")
    if command is not None:
        at = value.line_of("command")
        if not reader.typed(command, str, at, "entry.command", "a command such as /pizza"):
            command = None
        elif not COMMAND_RE.fullmatch(command):
            reader.problem(at, "entry.command",
                           f"invalid command {command!r} (a '/' then lowercase letters, digits, _)")
            command = None
    access = value.get("access", "users")
    if access not in ACCESS_KINDS:
        reader.problem(value.line_of("access"), "entry.access",
                       f"unknown access {access!r} (expected one of: {', '.join(ACCESS_KINDS)})")
        access = "users"
    title = reader.message(value.get("title"), value.line_of("title"), "entry.title", languages)
    return Entry(command=command, access=access, title=title, line=value.line)


def _states(reader: Reader, value: Any, line: int, languages) -> dict[str, StateSpec] | None:
    if value is None:
        return None
    states: dict[str, StateSpec] = {}
    for index, item, where in each_mapping(reader, value, line, "states", "states"):
        state = _state(reader, item, where, index, languages)
        if state is None:
            continue
        if state.name in states:
            first = states[state.name].line
            reader.problem(item.line_of("name"), f"{where}.name",
                           f"duplicate state '{state.name}' (first defined on line {first})")
            continue
        states[state.name] = state
    return states


def _state(reader: Reader, item: LineDict, where: str, index: int, languages) -> StateSpec | None:
    reader.check_keys(item, STATE_KEYS, where)
    line = item.line_of
    name = item.get("name")
    if name is None:
        reader.problem(item.line, f"{where}.name", "required key is missing")
    elif not reader.typed(name, str, line("name"), f"{where}.name", "a state name"):
        name = None
    elif not NAME_RE.fullmatch(name):
        reader.problem(line("name"), f"{where}.name", f"invalid state name {name!r} ({NAME_RULE})")
    input_kind = item.get("input", "text")
    if input_kind not in INPUT_KINDS:
        reader.problem(line("input"), f"{where}.input",
                       f"unknown input kind {input_kind!r} (expected one of: {', '.join(INPUT_KINDS)})")
        input_kind = "text"
    final = item.get("final", False)
    reader.typed(final, bool, line("final"), f"{where}.final", "true or false")
    goto = item.get("goto")
    if goto is not None and not reader.typed(goto, str, line("goto"), f"{where}.goto", "a flow name"):
        goto = None
    elif goto == "":  # the engine would take it for no goto at all
        reader.problem(line("goto"), f"{where}.goto", "expected a flow name, got an empty text")
        goto = None
    say = reader.message(item.get("say"), line("say"), f"{where}.say", languages)
    buttons = _buttons(reader, item.get("buttons"), line("buttons"), f"{where}.buttons", languages)
    capture = _capture(reader, item.get("capture"), line("capture"), f"{where}.capture", languages, input_kind)
    on_enter = reader.names(item.get("on_enter"), line("on_enter"), f"{where}.on_enter")
    if name is None:
        return None
    return StateSpec(name=name, say=say, buttons=buttons, input=input_kind, capture=capture, on_enter=on_enter,
                     goto=goto, final=final is True, index=index, line=line("name"))


def _buttons(reader: Reader, value: Any, line: int, key: str, languages) -> tuple[Button, ...]:
    buttons, indexes = [], []
    for index, item, where in each_mapping(reader, value, line, key, "buttons"):
        reader.check_keys(item, BUTTON_KEYS, where)
        action = item.get("action")
        if action is None:
            reader.problem(item.line, f"{where}.action", "required key is missing")
        elif not reader.typed(action, str, item.line_of("action"), f"{where}.action", "an action name"):
            action = None
        elif not ACTION_RE.fullmatch(action):
            reader.problem(item.line_of("action"), f"{where}.action", f"invalid action name {action!r} ({ACTION_RULE})")
            action = None
        label = reader.message(item.get("label"), item.line_of("label"), f"{where}.label", languages)
        if "label" not in item:
            reader.problem(item.line, f"{where}.label", "required key is missing")
        elif item["label"] is None:
            reader.problem(item.line_of("label"), f"{where}.label",
                           "expected a text or a mapping of language to text, got nothing")
        if action is not None:
            buttons.append(Button(label=label or {}, action=action, line=item.line))
            indexes.append(index)
    if isinstance(value, list):
        reader.kept(key, indexes, len(value))
    return tuple(buttons)


def _capture(reader: Reader, value: Any, line: int, key: str, languages, input_kind: str) -> Capture | None:
    if value is None:
        return None
    if not reader.typed(value, dict, line, key, "a mapping"):
        return None
    reader.check_keys(value, CAPTURE_KEYS, key)
    slot = value.get("slot")
    if slot is None:
        reader.problem(value.line, f"{key}.slot", "required key is missing")
    elif not reader.typed(slot, str, value.line_of("slot"), f"{key}.slot", "a slot name"):
        slot = None
    elif not NAME_RE.fullmatch(slot):
        reader.problem(value.line_of("slot"), f"{key}.slot", f"invalid slot name {slot!r} ({NAME_RULE})")
    kind = value.get("kind", "text")
    if kind not in CAPTURE_KINDS:
        reader.problem(value.line_of("kind"), f"{key}.kind",
                       f"unknown capture kind {kind!r} (expected one of: {', '.join(CAPTURE_KINDS)})")
        kind = None
    pattern, group = value.get("pattern"), value.get("group")
    if kind == "regex" and pattern is None:
        reader.problem(value.line, f"{key}.pattern", "required when kind is 'regex'")
    for name in ("pattern", "group"):
        if kind not in ("regex", None) and value.get(name) is not None:
            reader.problem(value.line_of(name), f"{key}.{name}", f"only used with kind 'regex', not '{kind}'")
    compiled = None
    if kind == "regex" and pattern is not None:
        compiled = _compile(reader, pattern, value.line_of("pattern"), f"{key}.pattern")
    if kind != "regex" or compiled is None:
        pattern = group = None
    elif group is not None and not _group_exists(reader, compiled, group, value.line_of("group"), f"{key}.group"):
        group = None
    validate = value.get("validate")
    if validate is not None and not reader.typed(validate, str, value.line_of("validate"), f"{key}.validate",
                                                 "a condition name"):
        validate = None
    invalid = reader.message(value.get("invalid"), value.line_of("invalid"), f"{key}.invalid", languages)
    if input_kind == "password":
        # The engine keeps a password as typed, before any capture runs: these would silently do nothing.
        for name, default in (("kind", "text"), ("validate", None), ("invalid", None)):
            if value.get(name, default) not in (default, None):
                reader.problem(value.line_of(name), f"{key}.{name}",
                               f"a password input keeps the text as typed, so '{name}' is not used")
        kind, pattern, group, validate, invalid = "text", None, None, None, None
    if slot is None:
        return None
    return Capture(
        slot=slot,
        kind=kind or "text",
        pattern=pattern,
        group=group,
        validate=validate,
        invalid=invalid,
        line=value.line,
    )


def _group_exists(reader: Reader, compiled: Pattern, group: Any, line: int, key: str) -> bool:
    if isinstance(group, bool) or not isinstance(group, (int, str)):
        reader.problem(line, key, f"expected a group number or name, got {yaml_kind(group)}")
        return False
    if isinstance(group, int) and not 0 <= group <= compiled.groups:
        reader.problem(line, key, f"the pattern has no group {group} (it has {compiled.groups})")
        return False
    if isinstance(group, str) and group not in compiled.groupindex:
        reader.problem(line, key, f"the pattern has no group named '{group}'{did_you_mean(group, compiled.groupindex)}")
        return False
    return True


def _phrase(reader: Reader, phrase: str, line: int, key: str) -> str | None:
    """Keywords and examples are compared once normalised: one that normalises to nothing never matches."""
    if not normalise(phrase):
        reader.problem(line, key, f"{phrase!r} is empty once normalised (punctuation is ignored)")
        return None
    return phrase


def _lists_anything(value: Any) -> bool:
    """Whether a `keywords`, `patterns` or `examples` value holds anything, in any of its languages."""
    return any(value.values()) if isinstance(value, dict) else bool(value)


def _intent_pattern(reader: Reader, pattern: Any, line: int, key: str):
    compiled = _compile(reader, pattern, line, key)
    # Patterns are searched for, so one that matches the empty text matches anywhere and outranks
    # every keyword; `^$` (a text of punctuation only) matches the empty text but not a word.
    if compiled is not None and compiled.search("") and compiled.search("x"):
        reader.problem(line, key, f"{pattern!r} matches an empty text, so it would match every message")
        return None
    return compiled


def _compile(reader: Reader, pattern: Any, line: int, key: str):
    if not reader.typed(pattern, str, line, key, "a regular expression"):
        return None
    try:
        return compile_pattern(pattern)
    except PatternError as err:
        reader.problem(line, key, f"invalid regular expression: {err}")
        return None


def _transitions(reader: Reader, value: Any, line: int, languages) -> tuple[TransitionSpec, ...]:
    transitions = []
    for index, item, where in each_mapping(reader, value, line, "transitions", "transitions"):
        reader.check_keys(item, TRANSITION_KEYS, where)
        at = item.line_of
        missing = [key for key in ("trigger", "source") if key not in item]
        for key in missing:
            reader.problem(item.line, f"{where}.{key}", "required key is missing")
        trigger = item.get("trigger")
        usable = not missing
        if "trigger" in item and not reader.typed(trigger, str, at("trigger"), f"{where}.trigger", "a trigger name"):
            usable = False
        elif "trigger" in item and not ACTION_RE.fullmatch(trigger):
            reader.problem(at("trigger"), f"{where}.trigger", f"invalid trigger name {trigger!r} ({ACTION_RULE})")
            usable = False
        source = item.get("source")
        if "source" in item and (source is None or source == []):  # a transition from no state could never fire
            reader.problem(at("source"), f"{where}.source", "expected a state, a list of states or '*', got "
                                                            + ("nothing" if source is None else "an empty list"))
        dest = item.get("dest")
        if dest is not None and not reader.typed(dest, str, at("dest"), f"{where}.dest", "a state name"):
            dest = None
        spec = TransitionSpec(
            trigger=trigger,
            sources=reader.names(source, at("source"), f"{where}.source"),
            dest=dest,
            conditions=reader.names(item.get("conditions"), at("conditions"), f"{where}.conditions"),
            unless=reader.names(item.get("unless"), at("unless"), f"{where}.unless"),
            before=reader.names(item.get("before"), at("before"), f"{where}.before"),
            after=reader.names(item.get("after"), at("after"), f"{where}.after"),
            say=reader.message(item.get("say"), at("say"), f"{where}.say", languages),
            index=index,
            line=item.line,
        )
        if usable:
            transitions.append(spec)
    return tuple(transitions)


def _intents(reader: Reader, value: Any, line: int, languages) -> dict[str, IntentSpec]:
    if value is None:
        return {}
    if not reader.typed(value, dict, line, "intents", "a mapping of intent name to definition"):
        return {}
    intents = {}
    for name, spec in value.items():
        where = f"intents.{name}"
        at = value.line_of(name)
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):  # named in the message, not the path ("a\n")
            reader.problem(at, "intents", f"invalid intent name {name!r} ({NAME_RULE})")
            continue
        if name == TEXT_TRIGGER:
            # An intent fires its trigger, and 'text' would skip the state's capture.
            reader.problem(at, where, "'text' is the trigger of typed text, not an intent name")
            continue
        if not reader.typed(spec, dict, at, where, "a mapping"):
            continue
        reader.check_keys(spec, INTENT_KEYS, where)
        kinds = ("keywords", "patterns", "examples")
        fields = {kind: _phrases(reader, spec, kind, where, languages,
                                 check=_intent_pattern if kind == "patterns" else _phrase)
                  for kind in kinds}
        # What was written, not what was kept: a phrase left out was reported already.
        if not any(_lists_anything(spec.get(kind)) for kind in kinds):
            reader.problem(at, where, "an intent needs at least one keyword, pattern or example")
        threshold = spec.get("threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0 <= threshold <= 100):
            reader.problem(spec.line_of("threshold"), f"{where}.threshold", "expected a number from 0 to 100")
            threshold = None
        intents[name] = IntentSpec(name=name, threshold=threshold, **fields)
    return intents


def _phrases(reader: Reader, spec: LineDict, kind: str, where: str, languages,
             check: Callable | None) -> dict[str, tuple[str, ...]]:
    value = spec.get(kind)
    if value is None:
        return {}
    key = f"{where}.{kind}"
    if isinstance(value, list) and len(languages) == 1:
        value_by_lang = {languages[0]: value}
        lines = {languages[0]: spec.line_of(kind)}
    elif reader.typed(value, dict, spec.line_of(kind), key, "a mapping of language to a list"):
        value_by_lang = value
        lines = {lang: value.line_of(lang) for lang in value}
    else:
        return {}
    phrases = {}
    for lang, items in value_by_lang.items():
        sub = f"{key}.{lang}"
        if lang not in languages:
            reader.problem(lines[lang], sub, f"language not declared in 'languages' ({', '.join(languages)})")
            continue
        if not isinstance(items, list):
            reader.problem(lines[lang], sub, f"expected a list, got {yaml_kind(items)}")
            continue
        good, indexes = [], []
        for index, item in enumerate(items):
            item_line = items.line_of(index)
            if not reader.typed(item, str, item_line, f"{sub}[{index}]", "a text"):
                continue
            if check is not None and check(reader, item, item_line, f"{sub}[{index}]") is None:
                continue
            good.append(item)
            indexes.append(index)
        reader.kept(sub, indexes, len(items))
        phrases[lang] = tuple(good)
    return phrases
