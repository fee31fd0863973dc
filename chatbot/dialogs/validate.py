"""Checks of meaning across a set of flows, all problems at once.

`loader` has already checked each file's shape; here every name a flow uses
is resolved (states, flows, intents, actions, conditions, slots) and the graph
is checked (reachability, ways out, goto chains).
"""

from __future__ import annotations

from typing import Mapping

from chatbot.dialogs.builtins import set_language as builtin_set_language
from chatbot.dialogs.engine import (
    COMMANDS,
    FLOW_PREFIX,
    GLOBAL_ACTIONS,
    GLOBAL_FLOWS,
    HOME_FLOW,
    LANG_PREFIX,
    PLACEHOLDER_RE,
    USER_HOME_FLOW,
    Turn,
)
from chatbot.dialogs.reader import did_you_mean
from chatbot.dialogs.model import TEXT_TRIGGER, FlowSpec, Message
from chatbot.dialogs.registry import Registry, split_ref
from chatbot.errors import FlowError
from chatbot.patterns import PatternError, compile_pattern

#: Names every message may use without any flow setting them, and what they show.
BUILTIN_PLACEHOLDERS = {"user": "the logged-in user", "lang": "the session's language"}
#: Trigger names that would shadow what the machine's model (a Turn) already has, or what
#: `transitions` adds to a model ('trigger', `to_*`, `may_*`, `is_*`).  'text' is the one
#: exception: it is the trigger of typed text, read by the engine, never looked up on the model.
RESERVED_TRIGGERS = (frozenset(name for name in dir(Turn) if not name.startswith("_")) | {"trigger"}) - {
    TEXT_TRIGGER}
RESERVED_PREFIXES = ("to_", "may_", "is_")


def validate_flows(flows: Mapping[str, FlowSpec], registry: Registry, *,
                   unparsed: frozenset[str] = frozenset(), incomplete: frozenset[str] = frozenset()
                   ) -> list[FlowError]:
    """Every problem of meaning in `flows`.

    `unparsed` names flows whose file could not be read at all: a goto to them
    is not reported again.  `incomplete` names flows that lost parts to shape
    problems already reported: their graph is not checked, because what looks
    unreachable or stuck there may only be missing.
    """
    problems: list[FlowError] = []
    slots = _slots_set_anywhere(flows, registry) | BUILTIN_PLACEHOLDERS.keys()
    secrets = _secrets(flows) - slots
    languages = frozenset(lang for flow in flows.values() for lang in flow.languages)
    goto_targets = _goto_targets(flows)
    for flow in flows.values():
        checker = _Checker(flow, flows, registry, slots, secrets, languages, unparsed, problems)
        checker.run(check_graph=flow.name not in incomplete, entered_from_elsewhere=goto_targets[flow.name])
    _entry_commands(flows, problems)
    _goto_cycles(flows, problems)
    _unreachable_flows(flows, problems)
    return problems


def _unreachable_flows(flows: Mapping[str, FlowSpec], problems: list[FlowError]) -> None:
    """A flow nothing leads to: no entry, not a home, and no other flow's goto names it."""
    reached = {HOME_FLOW, USER_HOME_FLOW, *GLOBAL_FLOWS.values()}
    for flow in flows.values():
        for state in flow.states.values():
            if state.goto and state.goto.partition(":")[0] != flow.name:
                reached.add(state.goto.partition(":")[0])
    for flow in flows.values():
        if flow.name not in reached and flow.entry is None:
            problems.append(FlowError(flow.path, flow.line_of("name"), "name",
                                      f"nothing leads to flow '{flow.name}': give it an 'entry' "
                                      f"or 'goto' it from another flow"))


def _goto_targets(flows: Mapping[str, FlowSpec]) -> dict[str, set[str]]:
    """Per flow, the states other flows jump to by `goto: flow:state`."""
    targets: dict[str, set[str]] = {name: set() for name in flows}
    for flow in flows.values():
        for state in flow.states.values():
            if state.goto:
                name, _, target = state.goto.partition(":")
                if target and name in targets:
                    targets[name].add(target)
    return targets


def _entry_commands(flows: Mapping[str, FlowSpec], problems: list[FlowError]) -> None:
    owners: dict[str, FlowSpec] = {}
    for flow in flows.values():
        command = flow.entry.command if flow.entry else None
        if not command:
            continue
        if command in COMMANDS:
            problems.append(FlowError(flow.path, flow.line_of("entry.command"), "entry.command",
                                      f"'{command}' is a built-in command"))
        elif command in owners:
            problems.append(FlowError(flow.path, flow.line_of("entry.command"), "entry.command",
                                      f"'{command}' is also the command of flow '{owners[command].name}'"))
        else:
            owners[command] = flow


def _goto_cycles(flows: Mapping[str, FlowSpec], problems: list[FlowError]) -> None:
    """A chain of `goto` states leading back to itself would move forever without user input."""
    def next_of(node: tuple[str, str]) -> tuple[str, str] | None:
        state = flows[node[0]].states.get(node[1])
        if state is None or not state.goto:
            return None
        name, _, target = state.goto.partition(":")
        flow = flows.get(name)
        if flow is None:
            return None
        return name, target or flow.initial

    done: set[tuple[str, str]] = set()
    for flow in flows.values():
        for index, state in enumerate(flow.states.values()):
            path: list[tuple[str, str]] = []
            node: tuple[str, str] | None = (flow.name, state.name)
            while node is not None and node not in done and node not in path:
                path.append(node)
                node = next_of(node)
            done.update(path)
            if node is not None and node in path:
                cycle = path[path.index(node):] + [node]
                start = flows[node[0]]
                key = f"states[{start.states[node[1]].index}].goto"
                problems.append(FlowError(
                    start.path, start.line_of(key), key,
                    "goto cycle without user input: " + " -> ".join(f"{f}:{s}" for f, s in cycle)))


def _slots_set_anywhere(flows: Mapping[str, FlowSpec], registry: Registry) -> set[str]:
    """Slots are per session and shared by its flows: any flow may set what another shows."""
    slots: set[str] = set()
    for callback in list(registry.actions.values()) + list(registry.conditions.values()):
        slots.update(callback.sets)
    for flow in flows.values():
        for state in flow.states.values():
            if state.capture and state.input != "password":
                slots.add(state.capture.slot)
        for intent in flow.intents.values():
            for patterns in intent.patterns.values():
                for pattern in patterns:
                    slots.update(_named_groups(pattern))
    return slots


def _named_groups(pattern: str) -> list[str]:
    """The named groups of a pattern, which become slots (``(?P<name>…)`` or ``(?<name>…)``)."""
    try:
        return list(compile_pattern(pattern).groupindex)
    except PatternError:  # reported where the flow is loaded
        return []


def _secrets(flows: Mapping[str, FlowSpec]) -> set[str]:
    """What password inputs keep: secrets, never slots, so a placeholder cannot show them."""
    return {state.capture.slot for flow in flows.values() for state in flow.states.values()
            if state.capture and state.input == "password"}


class _Checker:
    """Checks one flow against the whole set; problems name the key path and its line."""

    def __init__(self, flow: FlowSpec, flows, registry: Registry, slots: set[str], secrets: set[str],
                 languages: frozenset[str], unparsed: frozenset[str], problems: list) -> None:
        self.flow = flow
        self.flows = flows
        self.registry = registry
        self.slots = slots
        self.secrets = secrets
        self.languages = languages
        self.unparsed = unparsed
        self.problems = problems
        self.button_actions = {b.action for s in flow.states.values() for b in s.buttons}
        self.triggers = {t.trigger for t in flow.transitions}
        #: An unknown source, dest or initial already explains why the graph looks wrong.
        self.graph_broken = False

    def problem(self, key: str, message: str, *, line_key: str | None = None) -> None:
        """`line_key` is where the line is found when the file wrote `key` in a shorter form."""
        self.problems.append(FlowError(self.flow.path, self.flow.line_of(line_key or key), key, message))

    def run(self, *, check_graph: bool, entered_from_elsewhere: set[str]) -> None:
        flow = self.flow
        for key in ("initial", "fallback_state"):
            value = getattr(flow, key)
            if value not in flow.states and key in flow.lines:  # fallback_state defaults to initial
                self.problem(key, f"unknown state {value!r}{did_you_mean(value, flow.states)}")
                self.graph_broken = True
        for state in flow.states.values():
            self._state(state)
        for transition in flow.transitions:
            self._transition(transition)
        for intent in flow.intents.values():
            self._intent_slots(intent)
        if flow.entry is not None:
            self._message(flow.entry.title, "entry.title")
        self._message(flow.fallback, "fallback")
        self._message(flow.help, "help")
        if check_graph and not self.graph_broken:
            self._graph(entered_from_elsewhere)

    def _state(self, state) -> None:
        where = f"states[{state.index}]"
        self._message(state.say, f"{where}.say")
        for b_index, button in enumerate(state.buttons):
            key = self.flow.item_key(f"{where}.buttons", b_index)
            self._message(button.label, f"{key}.label")
            self._button_action(state.name, button.action, f"{key}.action")
        self._callables("action", state.on_enter, f"{where}.on_enter")
        if state.capture:
            capture = state.capture
            if capture.slot in BUILTIN_PLACEHOLDERS:
                self.problem(f"{where}.capture.slot", self._reserved_slot(capture.slot))
            if capture.validate:
                self._callables("condition", (capture.validate,), f"{where}.capture.validate")
            self._message(capture.invalid, f"{where}.capture.invalid")
        elif state.input == "password":
            self.problem(f"{where}.input", "a password input needs 'capture' to name the secret it keeps")
        if state.goto:
            self._goto(state.goto, f"{where}.goto")

    @staticmethod
    def _reserved_slot(name: str) -> str:
        # a slot of that name would show instead of the built-in value
        return f"slot name '{name}' is reserved: '{{{name}}}' shows {BUILTIN_PLACEHOLDERS[name]}"

    def _intent_slots(self, intent) -> None:
        """A pattern's named groups become slots: none may hide a built-in placeholder."""
        for lang, patterns in intent.patterns.items():
            for index, pattern in enumerate(patterns):
                for group in _named_groups(pattern):
                    if group in BUILTIN_PLACEHOLDERS:
                        # one language's list may be written without its language key
                        key = self.flow.item_key(f"intents.{intent.name}.patterns.{lang}", index)
                        short = f"intents.{intent.name}.patterns{key[key.rindex('['):]}"
                        self.problem(key, self._reserved_slot(group),
                                     line_key=short if short in self.flow.lines else key)

    def _button_action(self, state: str, action: str, key: str) -> None:
        if action.startswith(LANG_PREFIX):
            self._language(action[len(LANG_PREFIX):], key)
        elif action.startswith(FLOW_PREFIX):
            name = action[len(FLOW_PREFIX):]
            flow = self.flows.get(name)
            if flow is None:
                if name not in self.unparsed:
                    self.problem(key, f"unknown flow {name!r}{did_you_mean(name, self.flows)}")
            elif flow.entry is None:
                self.problem(key, f"flow '{name}' has no 'entry', so no button can start it")
        elif action == TEXT_TRIGGER:
            self.problem(key, "'text' is the trigger of typed text, not a button action")
        elif action in GLOBAL_ACTIONS:
            return
        elif action not in self.triggers:
            known = sorted(self.triggers - {TEXT_TRIGGER}) + list(GLOBAL_ACTIONS)
            self.problem(key, f"no transition has trigger '{action}'{did_you_mean(action, known)}")
        elif not any(t.trigger == action and state in self.flow.sources_of(t) for t in self.flow.transitions):
            self.problem(key, f"no transition with trigger '{action}' leaves state '{state}'")

    def _language(self, lang: str, key: str) -> None:
        if lang not in self.languages:
            self.problem(key, f"unknown language {lang!r} (the flows speak: {', '.join(sorted(self.languages))})")

    def _goto(self, target: str, key: str) -> None:
        flow_name, _, state_name = target.partition(":")
        flow = self.flows.get(flow_name)
        if flow is None and flow_name in self.unparsed:
            return
        if flow is None:
            self.problem(key, f"unknown flow {flow_name!r}{did_you_mean(flow_name, self.flows)}")
        elif state_name and state_name not in flow.states:
            self.problem(key, f"unknown state {state_name!r} in flow {flow_name!r}"
                              f"{did_you_mean(state_name, flow.states)}")

    def _transition(self, transition) -> None:
        where = f"transitions[{transition.index}]"
        flow = self.flow
        trigger = transition.trigger
        if trigger in RESERVED_TRIGGERS or trigger.startswith(RESERVED_PREFIXES):
            self.problem(f"{where}.trigger", f"trigger '{trigger}' clashes with an attribute of the dialog model")
        elif (trigger != TEXT_TRIGGER and trigger not in flow.intents and trigger not in self.button_actions
              and trigger not in GLOBAL_ACTIONS):
            known = list(flow.intents) + sorted(self.button_actions) + [TEXT_TRIGGER]
            self.problem(f"{where}.trigger", f"unknown intent '{trigger}' (not an intent, a button action or "
                                             f"'text'){did_you_mean(trigger, known)}")
        if transition.sources != ("*",):
            for index, source in enumerate(transition.sources):
                if source not in flow.states:
                    self.problem(self._item_key(f"{where}.source", index),
                                 f"unknown state {source!r}{did_you_mean(source, flow.states)}")
                    self.graph_broken = True
        if transition.dest is not None and transition.dest not in flow.states:
            self.problem(f"{where}.dest",
                         f"unknown state {transition.dest!r}{did_you_mean(transition.dest, flow.states)}")
            self.graph_broken = True
        for key in ("conditions", "unless"):
            self._callables("condition", getattr(transition, key), f"{where}.{key}")
        for key in ("before", "after"):
            self._callables("action", getattr(transition, key), f"{where}.{key}")
        self._message(transition.say, f"{where}.say")

    def _callables(self, kind: str, refs: tuple[str, ...], key: str) -> None:
        """`after: log_in` or `after: [a, b]`: each name must be registered."""
        for index, ref in enumerate(refs):
            found = self.registry.get(kind, ref)
            name, arg = split_ref(ref)
            if found is None:
                other, what = ("condition", "a condition") if kind == "action" else ("action", "an action")
                hint = f" ('{name}' is {what})" if self.registry.get(other, ref) else ""
                self.problem(self._item_key(key, index),
                             f"unknown {kind} {name!r}{hint}{did_you_mean(name, self.registry.names(kind))}")
            elif arg is not None and not found[0].takes_arg:
                self.problem(self._item_key(key, index), f"{kind} {name!r} takes no argument (written {ref!r})")
            elif arg is not None and not arg.strip():
                self.problem(self._item_key(key, index), f"{kind} {name!r}: nothing after ':' (written {ref!r})")
            elif arg is None and found[0].needs_arg:
                self.problem(self._item_key(key, index), f"{kind} {name!r} needs an argument: write '{name}:…'")
            elif found[0].func is builtin_set_language and arg:
                # as with a `lang:xx` button, switching to a language no flow speaks does nothing
                self._language(arg, self._item_key(key, index))

    def _item_key(self, key: str, index: int) -> str:
        """`source: a` is one name, `source: [a, b]` a list: name the item only where the file has a list."""
        return self.flow.item_key(key, index) if f"{key}[0]" in self.flow.lines else key

    def _message(self, message: Message | None, key: str) -> None:
        if not message:
            return
        for lang, variants in message.items():
            # `say: {en: ...}`, or `say: ...` alone in a flow of one language
            written = f"{key}.{lang}" if f"{key}.{lang}" in self.flow.lines else key
            unknown: dict[str, str] = {}  # each placeholder once, at the first variant that has it
            for index, text in enumerate(variants):
                for match in PLACEHOLDER_RE.finditer(text):
                    name = match.group(1)
                    if name is not None and name not in self.slots:
                        unknown.setdefault(name, self.flow.item_key(written, index))
            for name, variant in unknown.items():
                if name in self.secrets:
                    self.problem(written, f"placeholder '{{{name}}}' names the secret of a password input, "
                                          f"which is never shown", line_key=variant)
                else:
                    self.problem(written, f"placeholder '{{{name}}}' names a slot that is never set"
                                          f"{did_you_mean(name, self.slots)}", line_key=variant)

    def _graph(self, entered_from_elsewhere: set[str]) -> None:
        flow = self.flow
        edges: dict[str, set[str]] = {name: set() for name in flow.states}
        for transition in flow.transitions:
            for source in flow.sources_of(transition):
                if source in edges and transition.dest in flow.states:
                    edges[source].add(transition.dest)
        if flow.initial in flow.states:
            roots = {flow.initial, flow.fallback_state, *entered_from_elsewhere} & set(flow.states)
            seen, todo = set(roots), list(roots)
            while todo:
                for dest in edges[todo.pop()] - seen:
                    seen.add(dest)
                    todo.append(dest)
            for name, state in flow.states.items():
                if name not in seen:
                    self.problem(f"states[{state.index}]", f"state '{name}' is unreachable from '{flow.initial}'")
        has_way_out = {source for t in flow.transitions for source in flow.sources_of(t)}
        for name, state in flow.states.items():
            if not state.final and not state.goto and name not in has_way_out:
                self.problem(f"states[{state.index}]",
                             f"state '{name}' has no way out (add a transition, 'goto' or 'final: true')")
