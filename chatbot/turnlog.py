"""The log records of one dialog turn, as `chatbot replay` reads them back.

The server writes them after each committed turn; the replay benchmark writes the same
records through this function, so that what it replays is what a server logs.
"""

from __future__ import annotations

from typing import Iterable

from chatbot.dialogs import TurnResult
from chatbot.logs import EventLog


def login_outcome(account: dict) -> str:
    """`ok`, `throttled` or `failed` for an `account.login` record."""
    if account["ok"]:
        return "ok"
    return "throttled" if account.get("reason") == "throttled" else "failed"


def log_turn(events: EventLog, session: str, result: TurnResult, replies: Iterable[dict]) -> None:
    """Effects, transitions, slots, account events and replies (frames with their `seq`), in order."""
    log = events.event
    state = result.state
    user = state.user
    for effect in result.effects:
        log("effect", session=session, name=effect["name"], result=effect["result"])
    for step in result.transitions:
        log("transition", session=session, user=user, flow=step["flow"], state=step["to"],
            **{"from": step["from"], "to": step["to"]}, trigger=step["trigger"],
            intent=step.get("intent"), score=step.get("score"))
    for slot in result.slots_set:
        log("slot.set", session=session, user=user, flow=state.flow, slot=slot["slot"], value=slot["value"])
    for account in result.account_events:
        fields = {key: value for key, value in account.items() if key != "event"}
        if account["event"] == "account.login":
            fields["result"] = login_outcome(account)
        log(account["event"], session=session, **fields)
    for reply in replies:
        log("reply.out", session=session, user=user, flow=state.flow, state=state.state, seq=reply["seq"],
            text=reply["text"], buttons=reply["buttons"] or None, input=reply["input"],
            in_reply_to=reply.get("in_reply_to"))
