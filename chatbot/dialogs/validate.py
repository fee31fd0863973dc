"""Checks of meaning across a set of flows, all problems at once.

`loader` has already checked each file's shape; here every name a flow uses
is resolved (states, flows, intents, actions, conditions, slots) and the graph
is checked (reachability, ways out, goto chains).
"""

from __future__ import annotations

import re
from typing import Mapping

from chatbot.dialogs.engine import GLOBAL_ACTIONS, PLACEHOLDER_RE, Turn
from chatbot.dialogs.loader import did_you_mean
from chatbot.dialogs.model import TEXT_TRIGGER, FlowSpec, Message
from chatbot.dialogs.registry import Registry, split_ref
from chatbot.errors import FlowError

#: Names every message may use without any flow setting them.
BUILTIN_PLACEHOLDERS = frozenset({"user", "lang"})
#: Trigger names that would shadow what the machine's model (a Turn) already has.
RESERVED_TRIGGERS = frozenset(name for name in dir(Turn) if not name.startswith("_")) | {"trigger", "state"}
CAPTURE_GROUP_RE = re.compile(r"\(\?P<([A-Za-z_][A-Za-z0-9_]*)>")


def validate_flows(flows: Mapping[str, FlowSpec], registry: Registry) -> list[FlowError]:
    problems: list[FlowError] = []
    slots = _slots_set_anywhere(flows, registry) | BUILTIN_PLACEHOLDERS
    for flow in flows.values():
        _Checker(flow, flows, registry, slots, problems).run()
    return problems


def _slots_set_anywhere(flows: Mapping[str, FlowSpec], registry: Registry) -> set[str]:
    """Slots are per session and shared by its flows: any flow may set what another shows."""
    slots: set[str] = set()
    for callback in list(registry.actions.values()) + list(registry.conditions.values()):
        slots.update(callback.sets)
    for flow in flows.values():
        for state in flow.states.values():
            if state.capture:
                slots.add(state.capture.slot)
        for intent in flow.intents.values():
            for patterns in intent.patterns.values():
                for pattern in patterns:
                    slots.update(CAPTURE_GROUP_RE.findall(pattern))
    return slots


class _Checker:
    def __init__(self, flow: FlowSpec, flows, registry: Registry, slots: set[str], problems: list) -> None:
        self.flow = flow
        self.flows = flows
        self.registry = registry
        self.slots = slots
        self.problems = problems
        self.button_actions = {b.action for s in flow.states.values() for b in s.buttons}

    def problem(self, line: int, key: str, message: str) -> None:
        self.problems.append(FlowError(self.flow.path, line, key, message))

    def run(self) -> None:
        flow = self.flow
        states = flow.states
        for key in ("initial", "fallback_state"):
            value = getattr(flow, key)
            if value not in states:
                self.problem(flow.lines.get(key, 1), key, f"unknown state '{value}'{did_you_mean(value, states)}")
        for index, state in enumerate(states.values()):
            self._state(index, state)
        for transition in flow.transitions:
            self._transition(transition)
        self._graph()

    def _state(self, index: int, state) -> None:
        where = f"states[{index}]"
        self._message(state.say, state.line, f"{where}.say")
        for b_index, button in enumerate(state.buttons):
            self._message(button.label, button.line, f"{where}.buttons[{b_index}].label")
            declared = {t.trigger for t in self.flow.transitions}
            if (button.action not in declared and button.action not in GLOBAL_ACTIONS
                    and not button.action.startswith("lang:")):
                self.problem(button.line, f"{where}.buttons[{b_index}].action",
                             f"no transition has trigger '{button.action}'{did_you_mean(button.action, declared)}")
        for ref in state.on_enter:
            self._callable("action", ref, state.line, f"{where}.on_enter")
        if state.capture:
            capture = state.capture
            if capture.validate:
                self._callable("condition", capture.validate, capture.line, f"{where}.capture.validate")
            self._message(capture.invalid, capture.line, f"{where}.capture.invalid")
        elif state.input == "password":
            self.problem(state.line, f"{where}.capture",
                         "a password input needs 'capture' to name the secret it keeps")
        if state.goto:
            self._goto(state.goto, state.line, f"{where}.goto")

    def _goto(self, target: str, line: int, key: str) -> None:
        flow_name, _, state_name = target.partition(":")
        flow = self.flows.get(flow_name)
        if flow is None:
            self.problem(line, key, f"unknown flow '{flow_name}'{did_you_mean(flow_name, self.flows)}")
        elif state_name and state_name not in flow.states:
            self.problem(line, key, f"unknown state '{state_name}' in flow '{flow_name}'"
                                    f"{did_you_mean(state_name, flow.states)}")

    def _transition(self, transition) -> None:
        where = f"transitions[{transition.index}]"
        flow = self.flow
        trigger = transition.trigger
        if trigger in RESERVED_TRIGGERS or trigger.startswith(("to_", "may_", "is_")):
            self.problem(transition.line, f"{where}.trigger",
                         f"trigger '{trigger}' clashes with an attribute of the dialog model")
        elif (trigger != TEXT_TRIGGER and trigger not in flow.intents and trigger not in self.button_actions
              and trigger not in GLOBAL_ACTIONS):
            known = list(flow.intents) + sorted(self.button_actions) + [TEXT_TRIGGER]
            self.problem(transition.line, f"{where}.trigger",
                         f"unknown intent '{trigger}' (not an intent, a button action or 'text')"
                         f"{did_you_mean(trigger, known)}")
        if transition.sources != ("*",):
            for index, source in enumerate(transition.sources):
                if source not in flow.states:
                    key = f"{where}.source" if len(transition.sources) == 1 else f"{where}.source[{index}]"
                    self.problem(transition.line, key,
                                 f"unknown state '{source}'{did_you_mean(source, flow.states)}")
        if transition.dest is not None and transition.dest not in flow.states:
            self.problem(transition.line, f"{where}.dest",
                         f"unknown state '{transition.dest}'{did_you_mean(transition.dest, flow.states)}")
        for key in ("conditions", "unless"):
            for ref in getattr(transition, key):
                self._callable("condition", ref, transition.line, f"{where}.{key}")
        for key in ("before", "after"):
            for ref in getattr(transition, key):
                self._callable("action", ref, transition.line, f"{where}.{key}")
        self._message(transition.say, transition.line, f"{where}.say")

    def _callable(self, kind: str, ref: str, line: int, key: str) -> None:
        if self.registry.get(kind, ref) is None:
            name, _ = split_ref(ref)
            self.problem(line, key, f"unknown {kind} '{name}'{did_you_mean(name, self.registry.names(kind))}")

    def _message(self, message: Message | None, line: int, key: str) -> None:
        if not message:
            return
        for lang, variants in message.items():
            for text in variants:
                for match in PLACEHOLDER_RE.finditer(text):
                    name = match.group(1)
                    if name is not None and name not in self.slots:
                        self.problem(line, f"{key}.{lang}",
                                     f"placeholder '{{{name}}}' names a slot that is never set"
                                     f"{did_you_mean(name, self.slots)}")

    def _graph(self) -> None:
        flow = self.flow
        edges: dict[str, set[str]] = {name: set() for name in flow.states}
        for transition in flow.transitions:
            for source in flow.sources_of(transition):
                if source in edges and transition.dest in flow.states:
                    edges[source].add(transition.dest)
        if flow.initial in flow.states:
            seen, todo = {flow.initial}, [flow.initial]
            while todo:
                for dest in edges[todo.pop()] - seen:
                    seen.add(dest)
                    todo.append(dest)
            for index, (name, state) in enumerate(flow.states.items()):
                if name not in seen and name != flow.fallback_state:
                    self.problem(state.line, f"states[{index}]", f"state '{name}' is unreachable from '{flow.initial}'")
        has_way_out = {source for t in flow.transitions for source in flow.sources_of(t)}
        for index, (name, state) in enumerate(flow.states.items()):
            if not state.final and not state.goto and name not in has_way_out:
                self.problem(state.line, f"states[{index}]",
                             f"state '{name}' has no way out (add a transition, 'goto' or 'final: true')")
