"""`chatbot chat`: talk to the bot in a terminal through the same engine as the server.

Accounts live in a throw-away SQLite database that disappears on exit, so a
bot author can register and log in freely while trying a flow.
"""

from __future__ import annotations

import getpass
import sys
import tempfile
from pathlib import Path
from typing import Callable, TextIO

from chatbot.accounts import Accounts
from chatbot.dialogs import Action, Engine, LocalEnvironment, Text, TurnResult
from chatbot.dialogs.engine import SECRET_MASK
from chatbot.storage import Store

BUTTON_PREFIX = "#"


def _show(result: TurnResult, out: TextIO, debug: bool) -> list[str]:
    """Print the replies; return the actions of the buttons shown last."""
    actions: list[str] = []
    for reply in result.replies:
        print(f"bot> {reply.text}", file=out)
        if reply.buttons:
            actions = [action for _, action in reply.buttons]
            labels = "  ".join(f"[{BUTTON_PREFIX}{i}] {label}" for i, (label, _) in enumerate(reply.buttons, 1))
            print(f"     {labels}", file=out)
    if debug:
        state = result.state
        for step in result.transitions:
            extra = f" intent={step['intent']} score={step['score']}" if "intent" in step else ""
            print(f"  · {step['flow']}: {step['from']} --{step['trigger']}--> {step['to']}{extra}", file=out)
        print(f"  · state={state.flow}:{state.state} user={state.user} lang={state.lang} slots={state.slots}",
              file=out)
    return actions


def run_chat(engine: Engine, *, lang: str | None, debug: bool, stdin: TextIO | None = None,
             out: TextIO | None = None, read_secret: Callable[[str], str] | None = None) -> int:
    # Looked up at call time, so that whatever stands in for them then (a pipe, a test) is used.
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stdout if out is None else out
    if read_secret is None and stdin.isatty():
        read_secret = getpass.getpass
    with tempfile.TemporaryDirectory(prefix="chatbot-chat-") as scratch:
        store = Store(f"sqlite:///{Path(scratch) / 'accounts.db'}")
        store.open()
        try:
            env = LocalEnvironment(Accounts(store), client_key="terminal")
            session = engine.new_session(lang)
            result = engine.start(session, env)
            actions = _show(result, out, debug)
            print(f"(type {BUTTON_PREFIX}N to press button N, /help for commands, Ctrl-D to quit)", file=out)
            while True:
                secret = engine.input_kind(result.state) == "password"
                try:
                    if secret and read_secret is not None:
                        line = read_secret("you (hidden)> ")
                    else:
                        print("you> ", end="", file=out, flush=True)
                        line = stdin.readline()
                        if not line:
                            raise EOFError
                        line = line.rstrip("\n")
                        if not stdin.isatty():  # piped in: show it, so the output reads as a conversation
                            print(SECRET_MASK if secret else line, file=out)
                except (EOFError, KeyboardInterrupt):
                    print(file=out)
                    return 0
                event = _event(line, actions)
                result = engine.handle(result.state, event, env)
                actions = _show(result, out, debug) or actions
        finally:
            store.close()


def _event(line: str, actions: list[str]) -> Text | Action:
    if line.startswith(BUTTON_PREFIX) and line[1:].isdigit():
        index = int(line[1:]) - 1
        if 0 <= index < len(actions):
            return Action(actions[index])
    return Text(line)
