"""Replaying recorded sessions offline through the current dialog engine.

Each turn is run with a `ScriptedEnvironment` holding the answers the live server
got (clock, random reply variants, account checks), so the engine, which is pure,
must say and do exactly what the log says it did.  A password is not in the log and
is not needed: the engine keeps it out of every result, and every question about it
(was it right, is it strong enough, does the confirmation match) is answered from
the log.  A session stops at its first divergence, since its state is no longer the
recorded one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from chatbot.dialogs import Action, Engine, SessionState, Text, TurnResult
from chatbot.dialogs.environment import ScriptedEnvironment, ScriptMismatch
from chatbot.logs import REDACTED, as_read_back
from chatbot.replay.reader import Mark, RecordedSession, Step

__all__ = ["Aspect", "Divergence", "Outcome", "Replayer", "replay_session", "replay_sessions"]

SAME, DIVERGED, INCOMPLETE = "same", "diverged", "incomplete"


@dataclass(slots=True)
class Aspect:
    """One kind of output that differs: the recorded list beside the replayed one."""

    name: str  # "replies", "transitions" or "slots"
    expected: list[dict]
    actual: list[dict]


@dataclass(slots=True)
class Divergence:
    step: Step
    aspects: list[Aspect] = field(default_factory=list)
    problem: str | None = None  # what went wrong besides the outputs, e.g. a question the log cannot answer


@dataclass(slots=True)
class Outcome:
    """What replaying one session gave."""

    session: RecordedSession
    status: str  # same, diverged or incomplete
    steps: int = 0  # steps compared
    divergence: Divergence | None = None
    reason: str | None = None  # why a session is incomplete
    notes: list[str] = field(default_factory=list)


# --- comparable forms --------------------------------------------------------------------------
def recorded_reply(record: dict) -> dict:
    buttons = record.get("buttons") or []
    return {"text": record.get("text"),
            "buttons": [[b.get("label"), b.get("action")] if isinstance(b, dict) else b for b in buttons],
            "input": record.get("input") or "text"}


def replayed_reply(reply: Any) -> dict:
    return {"text": reply.text, "buttons": [[label, action] for label, action in reply.buttons],
            "input": reply.input}


def transition_form(record: dict) -> dict:
    form = {"flow": record.get("flow"), "from": record.get("from"), "to": record.get("to"),
            "trigger": record.get("trigger")}
    if record.get("intent") is not None:
        form["intent"] = record["intent"]
        form["score"] = record.get("score")
    return form


def slot_form(record: dict) -> dict:
    return {"slot": record.get("slot"), "value": jsonable(record.get("value"))}


def jsonable(value: Any) -> Any:
    """A value as it reads back from the log, encoded as the server's log lines encode it."""
    if value is None or isinstance(value, (str, int, bool)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return as_read_back(value)


def _slots_equal(expected: list[dict], actual: list[dict]) -> bool:
    if len(expected) != len(actual):
        return False
    return all(e["slot"] == a["slot"] and (e["value"] == a["value"] or e["value"] == REDACTED)
               for e, a in zip(expected, actual))


def compare(step: Step, result: TurnResult) -> list[Aspect]:
    """The outputs of a replayed turn that differ from the recorded ones."""
    aspects = []
    if not _replies_equal(step.replies, result.replies):
        aspects.append(Aspect("replies", [recorded_reply(r) for r in step.replies],
                              [replayed_reply(r) for r in result.replies]))
    if not _transitions_equal(step.transitions, result.transitions):
        aspects.append(Aspect("transitions", [transition_form(t) for t in step.transitions],
                              [transition_form(t) for t in result.transitions]))
    if step.slots or result.slots_set:
        expected = [slot_form(s) for s in step.slots]
        actual = [slot_form(s) for s in result.slots_set]
        if not _slots_equal(expected, actual):
            aspects.append(Aspect("slots", expected, actual))
    return aspects


# Field by field: most turns are the same, and this runs for every logged turn.
def _replies_equal(records: list[dict], replies: list) -> bool:
    if len(records) != len(replies):
        return False
    for record, reply in zip(records, replies):
        if record.get("text") != reply.text or (record.get("input") or "text") != reply.input:
            return False
        buttons = record.get("buttons") or ()
        if len(buttons) != len(reply.buttons):
            return False
        for button, (label, action) in zip(buttons, reply.buttons):
            if not isinstance(button, dict) or button.get("label") != label or button.get("action") != action:
                return False
    return True


def _transitions_equal(records: list[dict], transitions: list[dict]) -> bool:
    if len(records) != len(transitions):
        return False
    for record, transition in zip(records, transitions):
        if (record.get("from") != transition["from"] or record.get("to") != transition["to"]
                or record.get("flow") != transition["flow"] or record.get("trigger") != transition["trigger"]
                or record.get("intent") != transition.get("intent")
                or (transition.get("intent") is not None and record.get("score") != transition.get("score"))):
            return False
    return True


# --- running -----------------------------------------------------------------------------------
class Replayer:
    """Carries one session's state through the engine, turn by turn."""

    def __init__(self, engine: Engine, session: RecordedSession) -> None:
        self.engine = engine
        self.session = session
        self.state: SessionState | None = None

    def event(self, step: Step) -> Text | Action:
        return Text(step.text or "") if step.kind == "message" else Action(step.action or "")

    def run(self, step: Step, env: Any) -> TurnResult:
        """One turn with the given environment; the state moves on only when the caller says so."""
        if step.kind == "greeting":
            return self.engine.start(self.engine.new_session(step.lang), env)
        assert self.state is not None, "a session is replayed from its greeting"
        return self.engine.handle(self.state, self.event(step), env)

    def apply(self, mark: Mark) -> None:
        """A reconnect may switch the language (when the log says which)."""
        lang = mark.record.get("lang")
        if mark.kind == "resumed" and self.state is not None and lang in self.engine.languages:
            self.state = self.state.copy()
            self.state.lang = lang

    def check(self, step: Step) -> tuple[TurnResult | None, Divergence | None]:
        """Run a recorded turn with its recorded answers and compare; the state moves on."""
        env = ScriptedEnvironment(step.effects)
        try:
            result = self.run(step, env)
        except ScriptMismatch as mismatch:
            return None, Divergence(step, problem=str(mismatch))
        except Exception as error:  # a bug in an action must not stop the other sessions
            return None, Divergence(step, problem=f"the replay raised {type(error).__name__}: {error}")
        self.state = result.state
        aspects = compare(step, result)
        problem = None
        if env.position < len(env.effects):
            unasked = ", ".join(str(e.get("name")) for e in env.effects[env.position:])
            problem = f"the log recorded answers the flow did not ask for: {unasked}"
        if aspects or problem:
            return result, Divergence(step, aspects, problem)
        return result, None


def incomplete_reason(step: Step, last_seq: int) -> str | None:
    """Why a session cannot be replayed from `step` on, when lines it needs are not in the log.

    `last_seq` is the seq of the last reply before it. A session's seqs run without gaps: a
    committed turn takes one for a typed message and one for each reply.
    """
    # Only an unusable line near the turn (a warning) can be one it lacks.
    hint = (", see the warnings" if step.warned
            else "; no line near it is unusable: not logged, or in a file not given")
    if step.kind == "unknown" or step.lost_replies:
        lacking = "the input" if step.kind == "unknown" else "the replies"
        return f"step {step.number} ({step.where}): the log lacks {lacking} of this turn{hint}"
    if step.finished:
        first = step.replies[0]["seq"]
        expected = last_seq + (2 if step.kind == "message" else 1)
        if first != expected:
            return (f"step {step.number} ({step.where}): its first reply is seq {first}, not {expected}: "
                    f"the log lacks a turn or a reply before it{hint}")
    return None


def replay_session(engine: Engine, session: RecordedSession) -> Outcome:
    if not session.started:
        return Outcome(session, INCOMPLETE, reason="the log does not hold its start (session.created): "
                                                   "it may be in a rotated file that was deleted")
    replayer = Replayer(engine, session)
    outcome = Outcome(session, SAME)
    last_seq = 0
    for item in session.timeline:
        if isinstance(item, Mark):
            replayer.apply(item)
            continue
        reason = incomplete_reason(item, last_seq)
        if reason is not None:
            outcome.status = INCOMPLETE
            outcome.reason = reason
            return outcome
        if not item.finished:
            # No reply was logged: the turn failed or the server stopped before committing it.
            outcome.notes.append(f"step {item.number} ({item.where}) has no reply in the log and was skipped")
            continue
        last_seq = item.replies[-1]["seq"]
        _, divergence = replayer.check(item)
        if divergence is not None and item.warned and not any(a.name == "replies" for a in divergence.aspects):
            # The unusable line may be one of this turn's own (an answer of the environment, a
            # transition, a slot): what differs may be what the line held, so the flows are not
            # known to have changed. Its replies are all there (their seqs run on): if they differ, it did.
            outcome.status = INCOMPLETE
            outcome.reason = (f"step {item.number} ({item.where}): the replay differs from what the log holds of "
                              "this turn, and a line near it is unusable, see the warnings")
            return outcome
        outcome.steps += 1
        if divergence is not None:
            outcome.status = DIVERGED
            outcome.divergence = divergence
            return outcome
    return outcome


def replay_sessions(engine: Engine, sessions: Iterable[RecordedSession]) -> Iterator[Outcome]:
    for session in sessions:
        yield replay_session(engine, session)
