"""What one turn of a conversation reads and produces.

`SessionState` is all the engine keeps between turns; `Text` and `Action` are
the two kinds of event; `TurnResult` is what a turn returns.  `Turn` is the
short-lived object a flow's machine works on during one turn, and the `ctx`
that actions and conditions receive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from chatbot.dialogs.environment import Recorder
from chatbot.dialogs.messages import ANY_LANGUAGE, ENGINE_MESSAGES
from chatbot.dialogs.model import FlowSpec, Message, StateSpec
from chatbot.jsontext import as_read_back, dumps
from chatbot.text import Match

if TYPE_CHECKING:
    from chatbot.dialogs.engine import Engine, FlowRuntime

PLACEHOLDER_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class SessionState:
    """What the engine needs to know about a session between turns."""

    flow: str
    state: str
    slots: dict[str, Any] = field(default_factory=dict)
    lang: str = "en"
    user: str | None = None
    flow_version: str = ""
    #: Secrets typed into `password` inputs: kept in memory for the next turn
    #: (a password and its confirmation), never stored, logged or replayed.
    secrets: dict[str, str] = field(default_factory=dict)

    def copy(self) -> "SessionState":
        # Spelt out: dataclasses.replace looks the fields up again on every call, once a turn.
        return SessionState(self.flow, self.state, dict(self.slots), self.lang, self.user, self.flow_version,
                            dict(self.secrets))


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Action:
    name: str


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()  # (label, action)
    input: str = "text"

    def to_dict(self) -> dict:
        return {"text": self.text, "buttons": [{"label": l, "action": a} for l, a in self.buttons],
                "input": self.input}


@dataclass
class TurnResult:
    state: SessionState
    replies: list[Reply]
    transitions: list[dict] = field(default_factory=list)
    slots_set: list[dict] = field(default_factory=list)
    effects: list[dict] = field(default_factory=list)
    account_events: list[dict] = field(default_factory=list)
    auth_changed: bool = False
    #: The inbound text was typed into a password input: it must not be kept.
    secret_input: bool = False


SLOT_VALUES = "slots hold text, numbers, true/false, null, lists and objects"


def check_slots(slots: dict[str, Any]) -> None:
    """Refuse slots that storage could not keep, naming the slot: an action may have written one
    into `ctx.slots` directly, and the turn would otherwise fail only when it is committed."""
    try:
        dumps(slots)
    except (TypeError, ValueError, RecursionError):
        for name, value in slots.items():
            try:
                dumps(value)
            except (TypeError, ValueError, RecursionError):
                raise TypeError(f"slot '{name}': a {type(value).__name__} cannot be kept in a slot ({SLOT_VALUES}); "
                                "ctx.set_slot names the action that sets it") from None
        raise


def as_message(value: Any) -> Message:
    """A message an action wrote as a flow does (see docs/flows.md, Messages), in the form the
    loader gives: language to a tuple of variants. A flow's own messages pass through as they are."""
    if type(value) is dict and value and _loaded(value):
        return value
    if isinstance(value, Mapping):
        return {_language(lang): _variants(variants, f"say: {lang!r}") for lang, variants in value.items()} \
            or _refused(value)
    return {ANY_LANGUAGE: _variants(value, "say")}


def _loaded(message: dict) -> bool:
    """Whether `message` is already in the loader's form (a flow's own: checked once a turn or
    more, so with plain loops)."""
    for lang, variants in message.items():
        if type(lang) is not str or type(variants) is not tuple or not variants:
            return False
        for text in variants:
            if type(text) is not str:
                return False
    return True


def _language(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"say: a language is written as a text, like 'en', got {_shown(value)}")


def _variants(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(text, str) for text in value):
        return tuple(value)
    raise TypeError(f"{where}: expected a text or a non-empty list of texts, got {_shown(value)}")


def _refused(value: Any) -> Message:
    raise TypeError(f"say: expected a text, a list of texts or a mapping of language to those, got {_shown(value)}")


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, (list, tuple, dict)) and len(repr(value)) <= 60 else type(value).__name__


class Turn:
    """The model a flow's machine works on during one turn; also the `ctx` of actions.

    Actions and conditions use: `slots`, `user`, `lang`, `text`, `intent`,
    `env`, `account`, `say()`, `set_slot()`, `secret()`, `set_language()`,
    `log_in()`, `log_out()`.  The attributes are fixed (`__slots__`): a
    flow's trigger may not take one of these names, and the validator knows
    them all from the class.
    """

    __slots__ = ("engine", "session", "env", "runtime", "state", "text", "intent", "account", "replies",
                 "transitions", "slots_set", "account_events", "auth_changed", "pending_goto", "help_shown_at")

    def __init__(self, engine: "Engine", session: SessionState, env: Recorder) -> None:
        self.engine = engine
        self.session = session
        self.env = env
        self.runtime: FlowRuntime = engine.runtimes[session.flow]
        self.state = session.state  # the attribute transitions reads and writes
        self.text = ""
        self.intent: Match | None = None
        self.account: dict | None = None
        self.replies: list[Reply] = []
        self.transitions: list[dict] = []
        self.slots_set: list[dict] = []
        self.account_events: list[dict] = []
        self.auth_changed = False
        self.pending_goto: str | None = None
        #: How many replies there were once the show_help action said the help: if the turn says
        #: nothing after it (no state entered), the current question is asked again.
        self.help_shown_at: int | None = None

    # --- what actions and conditions use -------------------------------------------------
    @property
    def slots(self) -> dict[str, Any]:
        return self.session.slots

    @property
    def user(self) -> str | None:
        return self.session.user

    @property
    def lang(self) -> str:
        return self.session.lang

    @property
    def flow(self) -> FlowSpec:
        return self.runtime.spec

    def say(self, message: Message | str | list[str] | Mapping[str, str | list[str]], *, buttons=(),
            **values: Any) -> None:
        """Say a message, in the session's language: written as in a flow (a text, a list of
        variants, or a mapping of language to a text or a list of variants)."""
        text = message if isinstance(message, str) else self.engine.pick(as_message(message), self, self.flow)
        rendered = self.render(text, values)
        labels = tuple((self.render(self.engine.pick(b.label, self, self.flow), values), b.action)
                       for b in buttons)
        self.replies.append(Reply(rendered, labels))

    def say_engine(self, key: str, **values: Any) -> None:
        texts = ENGINE_MESSAGES[key]
        self.say(texts.get(self.lang) or texts.get(ANY_LANGUAGE) or texts["en"], **values)

    def render(self, text: str, values: Mapping[str, Any] = {}) -> str:
        def fill(match: re.Match) -> str:
            name = match.group(1)
            if name is None:
                return match.group(0)[0]
            value = values.get(name, self.slots.get(name))
            if value is None:
                value = {"user": self.user, "lang": self.lang}.get(name)
            return "" if value is None else str(value)
        return PLACEHOLDER_RE.sub(fill, text)

    def set_slot(self, name: str, value: Any) -> None:
        # Slots are stored as JSON: the value is kept as it will read back after a restart, so a
        # template shows the same before and after, and one JSON cannot hold fails here, in the
        # action that set it, not in the commit of the turn.
        try:
            value = as_read_back(value)
        except TypeError:
            raise TypeError(f"set_slot('{name}'): a {type(value).__name__} cannot be kept in a slot "
                            f"({SLOT_VALUES})") from None
        self.slots[name] = value
        self.slots_set.append({"slot": name, "value": value})

    def secret(self, name: str) -> str:
        return self.session.secrets.get(name, "")

    def set_language(self, lang: str) -> bool:
        if lang not in self.engine.languages:
            return False
        self.session.lang = lang
        return True

    def log_in(self, user: str) -> None:
        self.session.user = user
        self.auth_changed = True

    def log_out(self) -> None:
        if self.session.user is not None:
            self.account_events.append({"event": "account.logout", "user": self.session.user})
        self.session.user = None
        self.session.slots.clear()
        self.auth_changed = True

    # --- what the engine uses ------------------------------------------------------------
    @property
    def state_spec(self) -> StateSpec:
        return self.runtime.spec.states[self.state]

    def entered(self, spec: StateSpec) -> None:
        """Called by the machine on entering a state, and by the engine on a flow switch.

        The actions run first, so that what the state says may show what they set.
        """
        for ref in spec.on_enter:
            self.engine.call("action", ref, self)
        if spec.say is not None:
            self.say(spec.say, buttons=spec.buttons)
        if spec.goto:
            self.pending_goto = spec.goto
