"""Replay results for a person (text) or a program (JSON).

Text: one line per session (`same`, `diverged at step N`, `incomplete`), and for a
divergence the turn's input and, per kind of output, the recorded (`-`) and replayed
(`+`) items aligned like a diff, with unchanged items as context; then a summary.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from chatbot.replay.reader import Step
from chatbot.replay.runner import DIVERGED, INCOMPLETE, SAME, Aspect, Outcome

__all__ = ["Summary", "describe_step", "render_json", "render_text", "summarize"]

#: How the two sides are called; "expected" is what the log recorded.
EXPECTED, ACTUAL = "expected", "actual"


@dataclass(slots=True)
class Summary:
    sessions: int
    same: int
    diverged: int
    incomplete: int
    steps: int
    messages: int  # inputs replayed (messages and button presses)
    seconds: float
    warnings: int
    mode: str = "offline"  # or "live"

    @property
    def exit_code(self) -> int:
        return 1 if self.diverged else 0

    def as_dict(self) -> dict:
        return {"sessions": self.sessions, "same": self.same, "diverged": self.diverged,
                "incomplete": self.incomplete, "steps": self.steps, "messages": self.messages,
                "seconds": round(self.seconds, 3), "warnings": self.warnings, "mode": self.mode}


def summarize(outcomes: list[Outcome], *, seconds: float, warnings: int, mode: str = "offline") -> Summary:
    counts = Counter(outcome.status for outcome in outcomes)
    steps = sum(outcome.steps for outcome in outcomes)
    greetings = sum(1 for outcome in outcomes if outcome.steps)
    return Summary(len(outcomes), counts[SAME], counts[DIVERGED], counts[INCOMPLETE], steps, steps - greetings,
                   seconds, warnings, mode)


# --- one item on a line --------------------------------------------------------------------------
def describe_step(step: Step) -> str:
    where = f" in {step.state}" if step.state else ""
    if step.kind == "greeting":
        what = f"greeting (language {step.lang or '?'})"
    elif step.kind == "message":
        what = "password (not logged)" if step.secret else f"message {step.text!r}"
    elif step.kind == "action":
        what = f"button {step.action!r}"
    else:
        what = "turn whose input is not in the log"
    return f"step {step.number}: {what}{where}  ({step.where}, {_clock(step.ts)})"


def format_reply(reply: dict) -> str:
    line = str(reply.get("text"))
    buttons = reply.get("buttons") or []
    if buttons:
        line += "  " + " ".join(f"[{label} → {action}]" for label, action in buttons)
    if reply.get("input", "text") != "text":
        line += f"  (input: {reply['input']})"
    return line


def format_transition(transition: dict) -> str:
    source = str(transition.get("from"))
    flow = transition.get("flow")
    if ":" not in source:
        source = f"{flow}:{source}"
    detail = str(transition.get("trigger"))
    if transition.get("intent") is not None:
        detail += f", intent {transition['intent']} {transition.get('score')}"
    return f"{source} → {flow}:{transition.get('to')}  ({detail})"


def format_slot(slot: dict) -> str:
    return f"{slot.get('slot')} = {slot.get('value')!r}"


FORMATTERS = {"replies": format_reply, "transitions": format_transition, "slots": format_slot}


def diff_lines(aspect: Aspect, indent: str = "      ") -> list[str]:
    """The recorded and replayed items aligned: context, then `- expected:` / `+ actual:` pairs."""
    render = FORMATTERS.get(aspect.name, str)
    left = [render(item) for item in aspect.expected]
    right = [render(item) for item in aspect.actual]
    lines = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            lines += [f"{indent}  {'same':>8}: {text}" for text in left[i1:i2]]
            continue
        old, new = left[i1:i2], right[j1:j2]
        for index in range(max(len(old), len(new))):
            lines.append(f"{indent}- {EXPECTED:>8}: {old[index]}" if index < len(old)
                         else f"{indent}- {EXPECTED:>8}: (nothing)")
            lines.append(f"{indent}+ {ACTUAL:>8}: {new[index]}" if index < len(new)
                         else f"{indent}+ {ACTUAL:>8}: (nothing)")
    return lines


# --- whole reports ----------------------------------------------------------------------------
def render_text(outcomes: list[Outcome], summary: Summary, *, files: list[str]) -> str:
    lines = []
    width = max((len(outcome.session.id) for outcome in outcomes), default=8)
    for outcome in outcomes:
        session = outcome.session
        user = f"  user {session.user}" if session.user else ""
        if outcome.status == SAME:
            lines.append(f"{session.id:<{width}}  same        {outcome.steps} steps{user}")
        elif outcome.status == DIVERGED and outcome.divergence is not None:
            divergence = outcome.divergence
            lines.append(f"{session.id:<{width}}  DIVERGED    at step {divergence.step.number}{user}")
            lines.append(f"    {describe_step(divergence.step)}")
            if divergence.problem:
                lines.append(f"    {divergence.problem}")
            for aspect in divergence.aspects:
                lines.append(f"    {aspect.name}:")
                lines += diff_lines(aspect)
        else:
            lines.append(f"{session.id:<{width}}  incomplete  {outcome.reason}"
                         + (f" (same up to there, {outcome.steps} steps)" if outcome.steps else ""))
        lines += [f"    note: {note}" for note in outcome.notes]
    mode = "live " if summary.mode == "live" else ""
    lines.append("")
    lines.append(f"{mode}replay of {summary.sessions} session(s) from {len(files)} file(s): "
                 f"{summary.same} same, {summary.diverged} diverged, {summary.incomplete} incomplete; "
                 f"{summary.steps} steps in {summary.seconds:.2f} s"
                 + (f"; {summary.warnings} warning(s)" if summary.warnings else ""))
    return "\n".join(lines) + "\n"


def outcome_dict(outcome: Outcome) -> dict[str, Any]:
    data: dict[str, Any] = {"session": outcome.session.id, "status": outcome.status, "steps": outcome.steps,
                            "user": outcome.session.user, "where": outcome.session.where}
    if outcome.reason:
        data["reason"] = outcome.reason
    if outcome.notes:
        data["notes"] = outcome.notes
    divergence = outcome.divergence
    if divergence is not None:
        step = divergence.step
        data["divergence"] = {
            "step": step.number, "where": step.where, "ts": step.ts, "kind": step.kind, "state": step.state,
            "input": step.action if step.kind == "action" else step.text,
            "problem": divergence.problem,
            "differences": {aspect.name: {EXPECTED: aspect.expected, ACTUAL: aspect.actual}
                            for aspect in divergence.aspects},
        }
    return data


def render_json(outcomes: list[Outcome], summary: Summary, *, files: list[str], warnings: list[str]) -> str:
    document = {"summary": summary.as_dict(), "files": files, "warnings": warnings,
                "sessions": [outcome_dict(outcome) for outcome in outcomes]}
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def _clock(ts: str) -> str:
    """'2026-11-25T16:41:35.574Z' → '16:41:35'."""
    return ts[11:19] if len(ts) >= 19 else ts or "?"
