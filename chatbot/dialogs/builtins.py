"""The actions and conditions every flow can use.

Account work (checking a password, creating a user) is asked of the
environment, so it is recorded for replay and runs off the server's event
loop (`blocking=True`).  Passwords are read from the turn's secrets, which are
never stored or logged.
"""

from __future__ import annotations

from datetime import datetime, timezone

from chatbot.dialogs.registry import action, condition


def _account_event(ctx, event: str, answer: dict) -> None:
    record = {"event": event, "user": answer.get("user") or ctx.slots.get("username"), "ok": answer["ok"]}
    if answer.get("reason"):
        record["reason"] = answer["reason"]
    ctx.account_events.append(record)


@condition(blocking=True)
def credentials_valid(ctx) -> bool:
    """Check `username` and the secret `password`; the answer is kept for log_in."""
    ctx.account = ctx.env.authenticate(str(ctx.slots.get("username", "")), ctx.secret("password"))
    _account_event(ctx, "account.login", ctx.account)
    return ctx.account["ok"]


@condition()
def login_throttled(ctx) -> bool:
    return bool(ctx.account) and ctx.account.get("reason") == "throttled"


@condition(blocking=True)
def create_account(ctx) -> bool:
    """Register `username` with the secret `password`; true when the account exists now."""
    ctx.account = ctx.env.register(str(ctx.slots.get("username", "")), ctx.secret("password"))
    _account_event(ctx, "account.register", ctx.account)
    return ctx.account["ok"]


@condition()
def username_valid(ctx) -> bool:
    return ctx.env.validate_username(str(ctx.slots.get("username", ""))) is None


@condition(blocking=True)
def username_available(ctx) -> bool:
    return bool(ctx.env.username_available(str(ctx.slots.get("username", ""))))


@condition()
def password_valid(ctx) -> bool:
    return ctx.env.validate_password(ctx.secret("password"), str(ctx.slots.get("username", ""))) is None


@condition()
def passwords_match(ctx) -> bool:
    return bool(ctx.env.secrets_match(ctx.secret("password"), ctx.secret("password_confirm")))


@condition()
def logged_in(ctx) -> bool:
    return ctx.user is not None


@condition()
def anonymous(ctx) -> bool:
    return ctx.user is None


@condition()
def has(ctx, arg: str) -> bool:
    """`has:nickname`: the slot is set."""
    return ctx.slots.get(arg) not in (None, "")


@action(sets=("username",))
def log_in(ctx) -> None:
    """Log in as the account the last check or registration answered for."""
    if ctx.account and ctx.account.get("ok"):
        ctx.log_in(ctx.account["user"])
        ctx.slots["username"] = ctx.account["user"]


@action()
def log_out(ctx) -> None:
    ctx.log_out()


@action()
def set_language(ctx, arg=None) -> None:
    """`set_language:ru`, or the language in the slot `language` (`lang` is the session's own, not a slot)."""
    ctx.set_language(arg or str(ctx.slots.get("language", "")).strip().lower())


@action()
def show_help(ctx) -> None:
    """The help as `/help` gives it. The question after it is left to the end of the turn: a state
    entered after this action says its own, and only a turn that says nothing more asks again."""
    ctx.engine.show_help(ctx, reprompt=False)
    ctx.help_shown_at = len(ctx.replies)


@action()
def forget(ctx, arg=None) -> None:
    """`forget:nickname` drops one slot; `forget` drops them all."""
    if arg:
        ctx.slots.pop(arg, None)
    else:
        ctx.slots.clear()


@action(sets=("time", "date"))
def tell_time(ctx) -> None:
    """Put the current UTC time into the slots `time` and `date`."""
    moment = datetime.fromtimestamp(ctx.env.now(), tz=timezone.utc)
    ctx.set_slot("time", moment.strftime("%H:%M"))
    ctx.set_slot("date", moment.strftime("%Y-%m-%d"))
