"""What a live server may rightly answer to a recorded turn, and what to type for a password.

A live server picks its own reply variants and reads its own clock, so its texts may
differ from the log and still be right.  `Expectation` runs the recorded turn through
the local engine once per combination of random choices (with more than `MAX_COMBINATIONS`,
for as many sampled ones) and once with the clock moved on: a reply text is accepted when it
is the recorded one or one the engine produces for another choice; a text that changes with
the clock, or with a choice among too many to try each, is compared by its buttons and input
kind only.

The log holds no password.  `Passwords` makes them up so that the server reaches the
recorded outcome: a valid one where the log says the password was accepted, a second,
different one where the confirmation did not match, a wrong one where a login failed,
and for a login that succeeded the password this replay registered for that user
earlier.  A login as a user it did not register cannot be replayed live.
"""

from __future__ import annotations

import itertools
import math
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from chatbot.accounts import username_key
from chatbot.dialogs import Engine, Reply, SessionState
from chatbot.dialogs.environment import ScriptedEnvironment
from chatbot.replay.reader import Step
from chatbot.replay.runner import Replayer, recorded_reply, replayed_reply

__all__ = ["CannotReplay", "Expectation", "Passwords"]

MAX_COMBINATIONS = 64
#: A day, an hour, a minute and a second: every field of a date or a time changes.
CLOCK_SHIFT = 90061.0


class _ProbeEnvironment(ScriptedEnvironment):
    """The recorded answers, but chosen random indices and a shifted clock."""

    def __init__(self, effects: list[dict], choices: tuple[int, ...] = (), shift: float = 0.0) -> None:
        super().__init__(effects)
        self.choices = choices
        self.shift = shift
        self.counts: list[int] = []

    def random_index(self, count: int) -> int:
        recorded = super().random_index(count)
        if count <= 1:
            return recorded
        position = len(self.counts)
        self.counts.append(count)
        return self.choices[position] % count if position < len(self.choices) else recorded

    def now(self) -> float:
        return float(super().now()) + self.shift


@dataclass
class Expectation:
    """The replies a live server may send for one recorded turn."""

    replies: list[dict]  # as recorded
    texts: list[set[str]] = field(default_factory=list)  # per reply: every acceptable text
    labels: list[set[tuple]] = field(default_factory=list)  # per reply: every acceptable tuple of labels
    clocked: set[int] = field(default_factory=set)  # replies whose text depends on the clock
    #: Replies whose text depends on a random choice among more than MAX_COMBINATIONS.
    chosen: set[int] = field(default_factory=set)

    @classmethod
    def build(cls, engine: Engine, replayer: Replayer, step: Step) -> "Expectation":
        replies = [recorded_reply(r) for r in step.replies]
        expectation = cls(replies, [{r["text"]} for r in replies],
                          [{tuple(b[0] for b in r["buttons"])} for r in replies])
        base = _probe(replayer, step)
        if base is None or [replayed_reply(r) for r in base[0]] != replies:
            return expectation  # the local flows do not reproduce this turn: accept the log's words only
        counts = base[1]
        if counts and math.prod(counts) <= MAX_COMBINATIONS:
            every = itertools.product(*(range(count) for count in counts))
        elif counts:  # too many to try each: a sample tells which replies depend on the choice
            sampler = random.Random(0)
            every = (tuple(sampler.randrange(count) for count in counts) for _ in range(MAX_COMBINATIONS))
        else:
            every = iter(())
        for choices in every:
            found = _probe(replayer, step, choices=choices)
            if found is not None and len(found[0]) == len(replies):
                for index, reply in enumerate(found[0]):
                    expectation.texts[index].add(reply.text)
                    expectation.labels[index].add(tuple(label for label, _ in reply.buttons))
                    if counts and math.prod(counts) > MAX_COMBINATIONS and reply.text != base[0][index].text:
                        # Not every text it may take was seen: compared by buttons and input kind only.
                        expectation.chosen.add(index)
        if any(effect.get("name") == "now" for effect in step.effects):
            moved = _probe(replayer, step, shift=CLOCK_SHIFT)
            if moved is not None and len(moved[0]) == len(replies):
                expectation.clocked = {i for i, reply in enumerate(moved[0]) if reply.text != base[0][i].text}
        return expectation

    def differs(self, got: list[dict]) -> bool:
        """Whether the live replies are not ones the server may rightly send."""
        if len(got) != len(self.replies):
            return True
        for index, (want, reply) in enumerate(zip(self.replies, got)):
            buttons = reply.get("buttons") or []
            if [b.get("action") for b in buttons] != [b[1] for b in want["buttons"]]:
                return True
            if tuple(b.get("label") for b in buttons) not in self.labels[index]:
                return True
            if (reply.get("input") or "text") != want["input"]:
                return True
            if index not in self.clocked | self.chosen and reply.get("text") not in self.texts[index]:
                return True
        return False


def _probe(replayer: Replayer, step: Step, *, choices: tuple[int, ...] = (),
           shift: float = 0.0) -> tuple[list[Reply], list[int]] | None:
    env = _ProbeEnvironment(step.effects, choices, shift)
    try:
        result = replayer.run(step, env)
    except Exception:  # the local flows ask something else: no alternatives from them
        return None
    return result.replies, env.counts


class CannotReplay(Exception):
    """A recorded turn that a live replay cannot reproduce honestly (why is in the text)."""


@dataclass
class Passwords:
    """Passwords made up during one live replay: per user registered, and per session the pending one."""

    registered: dict[str, str] = field(default_factory=dict)  # username key → password

    @staticmethod
    def fresh() -> str:
        return "replay-" + secrets.token_urlsafe(12)

    def choose(self, step: Step, state: SessionState | None, pending: str | None) -> str:
        """The text to send for a recorded password input; raise CannotReplay when none would be honest."""
        answers = {effect.get("name"): effect.get("result") for effect in step.effects}
        username = str((state.slots if state else {}).get("username", ""))
        if "authenticate" in answers:
            answer = answers["authenticate"] if isinstance(answers["authenticate"], dict) else {}
            if not answer.get("ok"):
                return self.fresh()  # a wrong password, as recorded
            user = str(answer.get("user") or username)
            known = self.registered.get(username_key(user))
            if known is None:
                raise CannotReplay(f"logs in as {user!r}, whose password is not in the log (a live replay can log "
                                   "in only as a user it registered itself)")
            return known
        if "secrets_match" in answers:
            first = pending or self.fresh()
            return first if answers["secrets_match"] else first + "-mismatch"
        if "validate_password" in answers:
            return self.fresh() if answers["validate_password"] is None else \
                _breaking(answers["validate_password"], username)
        return self.fresh()

    def remember(self, step: Step, password: str | None) -> list[str]:
        """After a turn: a recorded successful registration used `password`; the user keys registered."""
        users = []
        for effect in step.effects:
            result = effect.get("result")
            if effect.get("name") == "register" and isinstance(result, dict) and result.get("ok") and password:
                users.append(username_key(str(result.get("user"))))
                self.registered[users[-1]] = password
        return users


def _breaking(rule: Any, username: str) -> str:
    """A password the server refuses for the same reason as the recorded one."""
    if rule == "too_long":
        return "x" * 200
    if rule == "only_whitespace":
        return " " * 12
    if rule == "same_as_username" and username:
        return username
    return "short"
