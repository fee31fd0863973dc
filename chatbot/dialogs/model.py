"""The parsed form of a flow file: plain, immutable data.

The loader builds these from YAML; the validator checks them against each
other; the engine only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from chatbot.text import IntentSpec

#: Per language, one or more variants of a text (a variant is picked at random).
Message = Mapping[str, tuple[str, ...]]

INPUT_KINDS = ("text", "password")
#: Who may start a flow through its `entry`: logged-in users, anonymous guests, or both.
ACCESS_KINDS = ("users", "guests", "anyone")
#: The trigger that fires on any text no intent claimed.
TEXT_TRIGGER = "text"


@dataclass(frozen=True)
class Button:
    label: Message
    action: str
    line: int


@dataclass(frozen=True)
class Capture:
    slot: str
    kind: str = "text"
    pattern: str | None = None
    group: int | str | None = None
    validate: str | None = None
    invalid: Message | None = None
    line: int = 0


@dataclass(frozen=True)
class StateSpec:
    name: str
    say: Message | None = None
    buttons: tuple[Button, ...] = ()
    input: str = "text"
    capture: Capture | None = None
    on_enter: tuple[str, ...] = ()
    goto: str | None = None
    final: bool = False
    index: int = 0
    line: int = 0


@dataclass(frozen=True)
class TransitionSpec:
    trigger: str
    sources: tuple[str, ...]
    dest: str | None
    conditions: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    say: Message | None = None
    index: int = 0
    line: int = 0


@dataclass(frozen=True)
class Entry:
    """How a flow is started from anywhere: a `/command`, a `flow:NAME` button, both listed by /help."""

    command: str | None = None
    access: str = "users"
    title: Message | None = None
    line: int = 0

    def admits(self, user: str | None) -> bool:
        return self.access == "anyone" or (self.access == "users") == (user is not None)


@dataclass(frozen=True)
class FlowSpec:
    """One flow file, parsed."""

    name: str
    path: str
    version: str
    languages: tuple[str, ...]
    initial: str
    fallback_state: str
    states: Mapping[str, StateSpec]
    transitions: tuple[TransitionSpec, ...]
    intents: Mapping[str, IntentSpec] = field(default_factory=dict)
    fallback: Message | None = None
    help: Message | None = None
    description: str = ""
    entry: Entry | None = None
    #: The line of every key path (`states[1].say.en`), for problems found after parsing.
    lines: Mapping[str, int] = field(default_factory=dict)
    #: For a list that lost items to shape problems (`on_enter: [5, tell_time]`), the index each
    #: item kept had in the file: later problems name the item as written.
    positions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def line_of(self, key: str) -> int:
        """The line of a key path, or of the nearest enclosing key that has one."""
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:max(key.rfind("."), key.rfind("["), 0)]
        return 1

    def item_key(self, key: str, index: int) -> str:
        """The key path of the `index`th item kept from the list at `key`, as the file numbers it."""
        kept = self.positions.get(key)
        return f"{key}[{kept[index] if kept else index}]"

    @property
    def fallback_language(self) -> str:
        return self.languages[0]

    def sources_of(self, transition: TransitionSpec) -> tuple[str, ...]:
        return tuple(self.states) if transition.sources == ("*",) else transition.sources
