"""A recorded session as a conversation a person reads: time, who, what, and what changed.

    session 1f0c… · started 2026-11-25 16:41:35 UTC · language en · logs/chatbot.log:5
    16:41:35  bot      Hi there! Log in or create an account to start chatting.
                       [Log in] [Register]
    16:41:35  visitor  pressed [Register]
                       · hub:welcome → registration:ask_username
    16:41:36  visitor  •••••• (password)
                       · registered ann
"""

from __future__ import annotations

import json

from chatbot.replay.reader import Mark, RecordedSession, Step

__all__ = ["transcript_json", "transcript_text"]

WHO_WIDTH = 8
GAP = " " * (10 + WHO_WIDTH + 1)  # under the text column


def _clock(ts: str) -> str:
    return ts[11:19] if len(ts) >= 19 else "--:--:--"


def _line(ts: str, who: str, text: str) -> list[str]:
    first, *rest = str(text).split("\n") or [""]
    return [f"{_clock(ts)}  {who:<{WHO_WIDTH}} {first}"] + [GAP + line for line in rest]


def _button_label(action: str, previous: list[dict]) -> str:
    """The label the person saw on the button with this action, from the last replies shown."""
    for reply in reversed(previous):
        for button in reply.get("buttons") or []:
            if isinstance(button, dict) and button.get("action") == action:
                return str(button.get("label"))
    return action


def _path(transitions: list[dict]) -> str:
    """hub:welcome → hub:registration_handoff → registration:ask_username  (register)."""
    first = transitions[0]
    source = str(first.get("from"))
    points = [source if ":" in source else f"{first.get('flow')}:{source}"]
    points += [f"{t.get('flow')}:{t.get('to')}" for t in transitions]
    why = str(first.get("trigger"))
    if first.get("intent") is not None:
        why += f", intent {first['intent']} {first.get('score')}"
    return " → ".join(points) + f"  ({why})"


def _account(record: dict) -> str:
    event, user = record.get("event"), record.get("user") or "?"
    if event == "account.login":
        result = record.get("result") or ("ok" if record.get("ok") else "failed")
        return f"logged in as {user}" if result == "ok" else f"login as {user}: {result}"
    if event == "account.register":
        return f"registered {user}" if record.get("ok") else \
            f"registration of {user} refused ({record.get('reason') or 'failed'})"
    return f"{user} logged out"


def transcript_text(session: RecordedSession) -> str:
    shown = session.steps[0].ts if session.steps else ""
    started = f"started {shown[:10]} {_clock(shown)} UTC" if session.started else "start not in the log"
    lines = [f"session {session.id} · {started} · language {session.lang or '?'} · {session.where}"]
    day = shown[:10]
    previous: list[dict] = []
    for item in session.timeline:
        if item.ts[:10] and item.ts[:10] != day:
            day = item.ts[:10]
            lines.append(f"— {day} —")
        if isinstance(item, Mark):
            lines += _mark(item)
            continue
        lines += _input(item, item.user or "visitor", previous)
        lines += [GAP + "· " + _path(item.transitions)] if item.transitions else []
        lines += [GAP + f"· {s.get('slot')} = {s.get('value')!r}" for s in item.slots]
        lines += [GAP + "· " + _account(a) for a in item.accounts]
        if item.error:
            lines.append(GAP + f"· the server failed on this turn ({item.error})")
        for reply in item.replies:
            lines += _line(reply.get("ts", item.ts), "bot", reply.get("text", ""))
            buttons = [b.get("label") for b in reply.get("buttons") or [] if isinstance(b, dict)]
            if buttons:
                lines.append(GAP + " ".join(f"[{label}]" for label in buttons))
            if reply.get("input") == "password":
                lines.append(GAP + "(asks for a password)")
        if item.replies:
            previous = item.replies
        elif not item.finished and item.kind != "greeting":
            lines.append(GAP + "(no reply in the log)")
    return "\n".join(lines) + "\n"


def _input(step: Step, who: str, previous: list[dict]) -> list[str]:
    if step.kind == "message":
        return _line(step.ts, who, "•••••• (password)" if step.secret else step.text or "")
    if step.kind == "action":
        return _line(step.ts, who, f"pressed [{_button_label(step.action or '', previous)}]")
    if step.kind == "unknown":
        return _line(step.ts, "?", "(the input of this turn is not in the log)")
    return []


def _mark(mark: Mark) -> list[str]:
    conn = mark.record.get("conn")
    if mark.kind == "resumed":
        text = f"reconnected{f' (connection {conn})' if conn else ''}"
        if mark.record.get("lang"):
            text += f", language {mark.record['lang']}"
    elif mark.kind == "closed":
        text = f"disconnected{f' (connection {conn})' if conn else ''}"
    else:
        text = f"session expired ({mark.record.get('reason') or 'time'})"
    return [f"{_clock(mark.ts)}  {'---':<{WHO_WIDTH}} {text}"]


def transcript_json(session: RecordedSession) -> str:
    entries = []
    for item in session.timeline:
        if isinstance(item, Mark):
            entries.append({"ts": item.ts, "event": item.kind, "conn": item.record.get("conn"),
                            "lang": item.record.get("lang")})
            continue
        entry = {"ts": item.ts, "step": item.number, "kind": item.kind, "state": item.state, "user": item.user}
        if item.kind == "message":
            entry["text"] = item.text
            entry["secret"] = item.secret
        elif item.kind == "action":
            entry["action"] = item.action
        entry["transitions"] = [{k: t.get(k) for k in ("flow", "from", "to", "trigger", "intent")
                                 if t.get(k) is not None} for t in item.transitions]
        entry["slots"] = [{"slot": s.get("slot"), "value": s.get("value")} for s in item.slots]
        entry["accounts"] = [{k: v for k, v in a.items() if k in ("event", "user", "ok", "result", "reason")}
                             for a in item.accounts]
        entry["replies"] = [{k: r.get(k) for k in ("seq", "ts", "text", "buttons", "input") if r.get(k) is not None}
                            for r in item.replies]
        entries.append(entry)
    document = {"session": session.id, "lang": session.lang, "where": session.where, "entries": entries}
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
