"""The dialog engine: one turn of a conversation, with no I/O.

`Engine.handle(session, event, env)` takes a session's state and one event (a
text or a button action) and returns the new state, the replies and a record
of what happened (transitions, slots, the environment's answers).  Everything
external reaches it through `env` (see `environment`), so the same inputs and
answers always give the same outputs.

One `transitions.Machine` is built per flow and shared by every session: a
turn creates a light `Turn` object as the machine's model and fires the
trigger's event on it directly, so no per-session machine or `add_model`
bookkeeping exists.  Only triggers declared for the current state can fire,
and user text never becomes a trigger name: it is analysed into an intent.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from transitions import Machine, State

from chatbot.dialogs.environment import Environment, Recorder
from chatbot.dialogs.model import TEXT_TRIGGER, FlowSpec, Message, StateSpec, TransitionSpec
from chatbot.dialogs.registry import Registry
from chatbot.dialogs.turn import PLACEHOLDER_RE, Action, Reply, SessionState, Text, Turn, TurnResult, check_slots
from chatbot.patterns import PatternTimeout
from chatbot.text import IntentMatcher, Match, extract, is_email

__all__ = ["Action", "Engine", "FlowRuntime", "PLACEHOLDER_RE", "Reply", "SessionState", "Text", "Turn",
           "TurnResult"]

#: Actions that work in every state: the page's own buttons and the commands.
GLOBAL_ACTIONS = ("help", "home", "login", "logout", "register")
#: Where sessions start, and where `/start` takes a logged-in user.
HOME_FLOW = "hub"
USER_HOME_FLOW = "chat"
#: The global actions that start a flow, only for a visitor who is not logged in.
GLOBAL_FLOWS = {"login": "login", "register": "registration"}
COMMANDS = {"/help": "help", "/start": "home", "/login": "login", "/logout": "logout",
            "/register": "register", "/lang": "lang"}
#: Button actions with an argument: `lang:ru` switches language, `flow:pizza` starts a flow with an `entry`.
LANG_PREFIX = "lang:"
FLOW_PREFIX = "flow:"
SECRET_MASK = "••••••"


class FlowRuntime:
    """A flow made runnable: its shared machine, its intent matcher, per-state tables."""

    def __init__(self, spec: FlowSpec, engine: "Engine", threshold: float) -> None:
        self.spec = spec
        self.matcher = IntentMatcher(spec.intents.values(), threshold=threshold)
        # Built once: looking the transitions of a state up by scanning them all is states × transitions.
        self.outgoing: dict[str, list[TransitionSpec]] = {name: [] for name in spec.states}
        for transition in spec.transitions:
            for source in spec.sources_of(transition):
                self.outgoing[source].append(transition)
        self.triggers: dict[str, list[str]] = {name: list(dict.fromkeys(t.trigger for t in transitions))
                                               for name, transitions in self.outgoing.items()}
        self.intents = {name: frozenset(t for t in triggers if t in spec.intents)
                        for name, triggers in self.triggers.items()}
        self.machine = Machine(
            model=None,
            states=[State(name, on_enter=[self._on_enter(state)]) for name, state in spec.states.items()],
            transitions=[self._transition(engine, t) for t in spec.transitions],
            initial=spec.initial,
            auto_transitions=False,
            send_event=True,
        )
        self.blocking: dict[str, bool] = {}  # filled by the engine once every flow is runnable

    @staticmethod
    def _on_enter(state: StateSpec):
        return lambda event: event.model.entered(state)

    @staticmethod
    def _transition(engine: "Engine", spec) -> dict:
        def condition(ref: str, expected: bool):
            return lambda event: bool(engine.call("condition", ref, event.model)) is expected

        def action(ref: str):
            return lambda event: engine.call("action", ref, event.model)

        before = [action(ref) for ref in spec.before]
        if spec.say is not None:
            message = spec.say
            before.append(lambda event: event.model.say(message))
        return {
            "trigger": spec.trigger,
            "source": list(spec.sources) if spec.sources != ("*",) else "*",
            "dest": spec.dest,
            "conditions": [condition(ref, True) for ref in spec.conditions]
            + [condition(ref, False) for ref in spec.unless],
            "before": before,
            "after": [action(ref) for ref in spec.after],
        }


class Engine:
    def __init__(self, flows: Mapping[str, FlowSpec], registry: Registry, *, home: str = HOME_FLOW,
                 user_home: str = USER_HOME_FLOW, default_lang: str = "en", threshold: float = 80.0) -> None:
        self.registry = registry
        self.flows = dict(flows)
        self.home = home
        self.user_home = user_home
        self.default_lang = default_lang
        self.languages = tuple(sorted({lang for flow in flows.values() for lang in flow.languages}))
        #: `/pizza` → 'pizza': the commands of flows that declare an `entry`.
        self.entry_commands = {flow.entry.command: name for name, flow in self.flows.items()
                               if flow.entry is not None and flow.entry.command}
        # A validated set has no goto cycle, so no chain is longer than the number of states.
        self.max_goto_chain = sum(len(flow.states) for flow in self.flows.values()) + 1
        self.runtimes = {name: FlowRuntime(spec, self, threshold) for name, spec in self.flows.items()}
        self.switch_blocks = any(self._blocking(refs) for refs in self._switch_refs())
        for runtime in self.runtimes.values():
            runtime.blocking = {name: self.switch_blocks or self.blocks(runtime, name)
                                for name in runtime.spec.states}

    # --- public API -----------------------------------------------------------------------
    def new_session(self, lang: str | None = None) -> SessionState:
        flow = self.flows[self.home]
        lang = lang if lang in self.languages else self.default_lang
        return SessionState(flow=flow.name, state=flow.initial, lang=lang, flow_version=flow.version)

    def start(self, session: SessionState, env: Environment) -> TurnResult:
        """Greet a new session: enter its flow's current state."""
        if session.flow not in self.runtimes or session.state not in self.flows[session.flow].states:
            return self._recover(session, env)
        turn = Turn(self, session.copy(), Recorder(env))
        turn.entered(turn.state_spec)
        self._follow_goto(turn)
        return self._finish(turn, secret_input=False)

    def handle(self, session: SessionState, event: Text | Action, env: Environment) -> TurnResult:
        turn = Turn(self, session.copy(), Recorder(env)) if session.flow in self.runtimes else None
        if turn is None or session.state not in turn.runtime.spec.states:
            return self._recover(session, env, secret_input=isinstance(event, Text))
        turn.session.flow_version = turn.runtime.spec.version
        secret = isinstance(event, Text) and turn.state_spec.input == "password"
        if isinstance(event, Text):
            turn.text = event.text
            self._on_text(turn, event.text)
        else:
            self._on_action(turn, event.name)
        self._follow_goto(turn)
        return self._finish(turn, secret_input=secret)

    def start_may_block(self) -> bool:
        """Whether greeting a new session may call a blocking action: it enters the home flow,
        or a flow's fallback state when the home flow's start cannot be entered."""
        return self.switch_blocks

    def may_block(self, session: SessionState) -> bool:
        """Whether a turn in this state may call a blocking action or condition."""
        runtime = self.runtimes.get(session.flow)
        return runtime is None or runtime.blocking.get(session.state, True)

    def input_kind(self, session: SessionState) -> str:
        """What the session's state asks for; "password" for a state the flows no longer have,
        whose page may show a password box (the text is then dropped, unread, by `_recover`)."""
        runtime = self.runtimes.get(session.flow)
        spec = runtime.spec.states.get(session.state) if runtime else None
        return spec.input if spec else "password"

    # --- used by Turn and FlowRuntime ---------------------------------------------------
    def call(self, kind: str, ref: str, turn: Turn) -> Any:
        found = self.registry.get(kind, ref)
        if found is None:  # the validator rejects such flows; this guards hand-built ones
            raise LookupError(f"unknown {kind} '{ref}'")
        callback, arg = found
        try:
            return callback.func(turn) if arg is None else callback.func(turn, arg)
        except SystemExit as exit_:
            # Raised by a bot's code (sys.exit in an action), it would end the whole server: it is
            # that code's bug, failing this turn like any other exception.
            raise RuntimeError(f"{kind} '{ref}' raised SystemExit({exit_.code!r}), "
                               "which would end the program; raise an exception instead") from exit_

    def blocks(self, runtime: FlowRuntime, state: str) -> bool:
        """Whether a turn starting in `state` may, through its own transitions, call a blocking callable."""
        spec = runtime.spec
        refs: list[tuple[str, str]] = []
        capture = spec.states[state].capture
        if capture and capture.validate:
            refs.append(("condition", capture.validate))
        for transition in runtime.outgoing[state]:
            refs += [("condition", r) for r in transition.conditions + transition.unless]
            refs += [("action", r) for r in transition.before + transition.after]
            if transition.dest in spec.states:
                refs += self._entering_refs(spec.name, transition.dest)
        return self._blocking(refs)

    def pick(self, message: Message, turn: Turn, flow: FlowSpec) -> str:
        variants = message.get(turn.lang) or message.get(flow.fallback_language) or next(iter(message.values()))
        return variants[turn.env.random_index(len(variants))] if len(variants) > 1 else variants[0]

    def _blocking(self, refs) -> bool:
        return any((found := self.registry.get(kind, ref)) is None or found[0].blocking for kind, ref in refs)

    def _entering_refs(self, flow: str, state: str) -> list[tuple[str, str]]:
        """The actions entering a state runs, following its goto chain."""
        refs: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        while flow in self.flows and state in self.flows[flow].states and (flow, state) not in seen:
            seen.add((flow, state))
            spec = self.flows[flow].states[state]
            refs += [("action", r) for r in spec.on_enter]
            if not spec.goto:
                break
            flow, _, state = spec.goto.partition(":")
            state = state or (self.flows[flow].initial if flow in self.flows else "")
        return refs

    def _switch_refs(self) -> Iterator[list[tuple[str, str]]]:
        """What the switches any state allows (home, login, an entry, recovery) may run."""
        targets = {self.home, self.user_home, *GLOBAL_FLOWS.values(), *self.entry_commands.values()}
        targets |= {name for name, flow in self.flows.items() if flow.entry is not None}
        for name in targets:
            if name in self.flows:
                yield self._entering_refs(name, self.flows[name].initial)
        for name, flow in self.flows.items():
            yield self._entering_refs(name, flow.fallback_state)

    # --- one turn -------------------------------------------------------------------------
    def _on_text(self, turn: Turn, text: str) -> None:
        spec = turn.state_spec
        if spec.input == "password":
            # Whatever is typed here is a secret: no commands, no intents, no logging.
            if spec.capture:
                turn.session.secrets[spec.capture.slot] = text
            if not self._fire(turn, TEXT_TRIGGER):
                self._fallback(turn)
            return
        stripped = text.strip()
        if stripped.startswith("/"):
            self._command(turn, stripped)
            return
        candidates = turn.runtime.intents[turn.state]
        # Asked for an e-mail address, a text that is one is the answer: the words in it
        # (stop@example.com) are not intents.
        if candidates and not (spec.capture and spec.capture.kind == "email" and is_email(stripped)):
            try:
                match = turn.runtime.matcher.match(text, turn.lang, candidates)
            except PatternTimeout as timeout:
                raise _placed(turn.runtime.spec, timeout.where, timeout) from None
            if match is not None and self._fire_intent(turn, match):
                return
        if spec.capture and not self._capture(turn, spec, text):
            return
        if not self._fire(turn, TEXT_TRIGGER):
            self._fallback(turn)

    def _fire_intent(self, turn: Turn, match: Match) -> bool:
        before = {name: turn.slots.get(name) for name in match.slots}
        turn.intent = match
        for name, value in match.slots.items():
            turn.slots[name] = value
        if self._fire(turn, match.intent):
            turn.slots_set.extend({"slot": name, "value": value} for name, value in match.slots.items())
            return True
        for name, value in before.items():  # the intent led nowhere: undo what it captured
            if value is None:
                turn.slots.pop(name, None)
            else:
                turn.slots[name] = value
        turn.intent = None
        return False

    def _capture(self, turn: Turn, spec: StateSpec, text: str) -> bool:
        capture = spec.capture
        try:
            value = extract(capture.kind, text, pattern=capture.pattern, group=capture.group)
        except PatternTimeout as timeout:
            raise _placed(turn.runtime.spec, f"states[{spec.index}].capture.pattern", timeout) from None
        valid = value is not None
        if valid:
            previous = turn.slots.get(capture.slot)
            turn.slots[capture.slot] = value
            if capture.validate and not self.call("condition", capture.validate, turn):
                valid = False
                turn.slots.pop(capture.slot) if previous is None else turn.slots.__setitem__(capture.slot, previous)
        if not valid:
            if capture.invalid is not None:
                turn.say(capture.invalid, buttons=spec.buttons)
            else:
                self._reprompt(turn)
            return False
        turn.slots_set.append({"slot": capture.slot, "value": value})
        return True

    def _fire(self, turn: Turn, trigger: str) -> bool:
        if trigger not in turn.runtime.triggers[turn.state]:
            return False
        source = turn.state
        fired = turn.runtime.machine.events[trigger].trigger(turn)
        if fired:
            record = {"flow": turn.runtime.spec.name, "from": source, "to": turn.state, "trigger": trigger}
            if turn.intent is not None:
                record["intent"] = turn.intent.intent
                record["score"] = round(turn.intent.score, 1)
            turn.transitions.append(record)
        return bool(fired)

    def _on_action(self, turn: Turn, name: str) -> None:
        # 'text' stands for typed text: as a button it would skip the capture of the state.
        if name != TEXT_TRIGGER and name in turn.runtime.triggers[turn.state] and self._fire(turn, name):
            return
        if name.startswith(LANG_PREFIX):
            self._set_language(turn, name[len(LANG_PREFIX):].strip().lower())  # as `/lang RU` is
        elif name.startswith(FLOW_PREFIX):
            self._enter(turn, name[len(FLOW_PREFIX):], name)
        elif name in GLOBAL_ACTIONS:
            self._global(turn, name)
        else:
            turn.say_engine("unknown_action")
            self._reprompt(turn)

    def _command(self, turn: Turn, text: str) -> None:
        word, _, rest = text.partition(" ")
        word = word.lower()
        action = COMMANDS.get(word)
        if action == "lang":
            self._set_language(turn, rest.strip().lower())
        elif action is not None:  # what the page's button of that action does, flow's own handling first
            self._on_action(turn, action)
        elif word in self.entry_commands:
            self._enter(turn, self.entry_commands[word], word)
        else:
            turn.say_engine("unknown_command", command=word)
            self._reprompt(turn)  # the question and its buttons again, as for any refusal

    def show_help(self, turn: Turn, *, reprompt: bool = True) -> None:
        """The flow's help (or the engine's), the flows one may start, then the question again
        (unless `reprompt` is False: see the `show_help` action)."""
        turn.say(turn.flow.help) if turn.flow.help else turn.say_engine("help")
        self._list_entries(turn)
        if reprompt:
            self._reprompt(turn)

    def _global(self, turn: Turn, action: str) -> None:
        if action == "help":
            self.show_help(turn)
        elif action == "home":
            self._switch(turn, self.user_home if turn.user else self.home, "home")
        elif action == "logout":
            if turn.user is None:
                turn.say_engine("not_logged_in")
                self._reprompt(turn)
                return
            turn.log_out()
            turn.say_engine("logged_out")
            self._switch(turn, self.home, "logout")
        elif turn.user is not None:  # login / register while logged in
            turn.say_engine("already_logged_in")
            self._reprompt(turn)
        else:
            self._switch(turn, GLOBAL_FLOWS[action], action)

    def _enter(self, turn: Turn, flow_name: str, trigger: str) -> None:
        """Start a flow through its `entry` (a `/command` or a `flow:NAME` button)."""
        flow = self.flows.get(flow_name)
        if flow is None or flow.entry is None:
            turn.say_engine("unknown_action")
            self._reprompt(turn)
        elif not flow.entry.admits(turn.user):
            turn.say_engine("already_logged_in" if turn.user else "login_required")
            self._reprompt(turn)
        else:
            self._switch(turn, flow_name, trigger)

    def _list_entries(self, turn: Turn) -> None:
        entries = [f"{flow.entry.command} — {turn.render(self.pick(flow.entry.title, turn, flow))}"
                   for flow in self.flows.values()
                   if flow.entry and flow.entry.command and flow.entry.title and flow.entry.admits(turn.user)]
        if entries:
            turn.say_engine("entries", entries="; ".join(entries))

    def _set_language(self, turn: Turn, lang: str) -> None:
        if turn.set_language(lang):
            turn.say_engine("language_set")
        else:
            turn.say_engine("unknown_language", languages=", ".join(self.languages))
        self._reprompt(turn)

    def _fallback(self, turn: Turn) -> None:
        flow = turn.flow
        turn.say(flow.fallback, buttons=turn.state_spec.buttons) if flow.fallback else turn.say_engine("fallback")
        if not flow.fallback:
            self._reprompt(turn, say_text=False)

    def _reprompt(self, turn: Turn, *, say_text: bool = True) -> None:
        """Show the current state's question and buttons again."""
        spec = turn.state_spec
        if spec.say is None:
            return
        if say_text:
            turn.say(spec.say, buttons=spec.buttons)
        elif spec.buttons and turn.replies:
            last = turn.replies.pop()
            turn.say(last.text, buttons=spec.buttons)

    def _switch(self, turn: Turn, flow: str, trigger: str) -> None:
        turn.pending_goto = flow
        self._follow_goto(turn, trigger=trigger)

    def _follow_goto(self, turn: Turn, trigger: str = "goto") -> None:
        for _ in range(self.max_goto_chain):
            target = turn.pending_goto
            if target is None:
                return
            turn.pending_goto = None
            flow_name, _, state_name = target.partition(":")
            runtime = self.runtimes[flow_name]
            source = f"{turn.runtime.spec.name}:{turn.state}"
            turn.runtime = runtime
            turn.state = state_name or runtime.spec.initial
            turn.session.flow_version = runtime.spec.version
            turn.transitions.append({"flow": flow_name, "from": source, "to": turn.state, "trigger": trigger})
            trigger = "goto"
            turn.entered(turn.state_spec)
        # Unreachable for a validated set: `validate` rejects goto cycles.
        raise RuntimeError(f"goto cycle at {turn.runtime.spec.name}:{turn.state}")

    def _recover(self, session: SessionState, env: Environment, *, secret_input: bool = False) -> TurnResult:
        """The session's flow or state no longer exists: continue from the fallback state.

        `secret_input`: a text came with the turn. It is treated as a secret, since what the old
        state asked for is unknown: its page may have shown a password box.
        """
        turn_session = session.copy()
        runtime = self.runtimes.get(session.flow)
        if runtime is None:
            runtime = self.runtimes[self.user_home if session.user else self.home]
        turn_session.flow = runtime.spec.name
        turn_session.state = runtime.spec.fallback_state
        turn = Turn(self, turn_session, Recorder(env))
        turn.say_engine("flow_changed")
        turn.transitions.append({"flow": runtime.spec.name, "from": f"{session.flow}:{session.state}",
                                 "to": turn.state, "trigger": "recover"})
        turn.session.flow_version = runtime.spec.version
        turn.entered(turn.state_spec)
        self._follow_goto(turn)
        return self._finish(turn, secret_input=secret_input)

    def _finish(self, turn: Turn, *, secret_input: bool) -> TurnResult:
        session = turn.session
        session.flow = turn.runtime.spec.name
        session.state = turn.state
        if not turn.replies or turn.help_shown_at == len(turn.replies):
            self._reprompt(turn)
        if not turn.replies:
            turn.say_engine("ok")
        input_kind = turn.state_spec.input
        if input_kind != "password":
            session.secrets.clear()  # a secret lives only until the step that needs it is over
        check_slots(session.slots)
        replies = [Reply(reply.text, reply.buttons, input_kind) for reply in turn.replies]
        return TurnResult(
            state=session,
            replies=replies,
            transitions=turn.transitions,
            slots_set=turn.slots_set,
            effects=turn.env.effects,
            account_events=turn.account_events,
            auth_changed=turn.auth_changed,
            secret_input=secret_input,
        )


def _placed(flow: FlowSpec, key: str, timeout: PatternTimeout) -> PatternTimeout:
    """The timeout, naming the pattern as a flow problem does: file, line and key."""
    return PatternTimeout(f"{flow.path}:{flow.line_of(key)}: {key}", timeout.chars)
