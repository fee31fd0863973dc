"""`chatbot chat`: talk to the bot in a terminal through the same engine as the server.

Accounts live in a throw-away SQLite database that disappears on exit, so a
bot author can register and log in freely while trying a flow.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, TextIO

from chatbot.accounts import Accounts
from chatbot.config import Settings
from chatbot.dialogs import Action, Engine, LocalEnvironment, Text, TurnResult
from chatbot.dialogs.engine import SECRET_MASK
from chatbot.storage import Store

BUTTON_PREFIX = "#"
MAX_TEXT_CHARS = Settings().max_text_chars


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
    if stdin is None:  # started with its input closed (`<&-`): a conversation with nothing to say
        stdin = io.StringIO("")
    out = sys.stdout if out is None else out
    if isinstance(stdin, io.TextIOWrapper):  # bytes that are not text must not end the conversation
        stdin.reconfigure(errors="replace")
    if read_secret is None and stdin.isatty():
        read_secret = getpass.getpass
    with _quit_on_hangup(), tempfile.TemporaryDirectory(prefix="chatbot-chat-") as scratch:
        store = Store(f"sqlite:///{Path(scratch) / 'accounts.db'}")
        store.open()
        try:
            env = LocalEnvironment(Accounts(store), client_key="terminal")
            session = engine.new_session(lang)
            try:
                result = engine.start(session, env)
            except Exception as error:  # an action's bug on the first state: there is no session to go on with
                print(f"error: the bot failed to greet ({type(error).__name__}: {error})", file=out)
                return 1
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
                        line = line.rstrip("\r\n")  # a file written on Windows ends lines with \r\n
                        if not stdin.isatty():  # piped in: show it, so the output reads as a conversation
                            print(SECRET_MASK if secret else line, file=out)
                except (EOFError, KeyboardInterrupt):
                    print(file=out)
                    return 0
                if len(line) > MAX_TEXT_CHARS:  # as the server's default limit refuses it
                    print(f"error: text: {len(line)} characters, the limit is {MAX_TEXT_CHARS}", file=out)
                    continue
                try:
                    result = engine.handle(result.state, _event(line, actions), env)
                except Exception as error:  # an action's bug: as the server does, say so and go on
                    print(f"error: the bot failed on that message ({type(error).__name__}: {error}); "
                          "it was not processed", file=out)
                    continue
                actions = _show(result, out, debug) or actions
        finally:
            store.close()


@contextlib.contextmanager
def _quit_on_hangup():
    """SIGTERM and SIGHUP (a closed terminal) end the chat as Ctrl-C does: the throw-away
    accounts, password hashes included, are deleted instead of left in the temporary folder."""
    if threading.current_thread() is not threading.main_thread():  # only there can handlers be set
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _event(line: str, actions: list[str]) -> Text | Action:
    # isdecimal, not isdigit: '²' is a digit int() refuses.
    if line.startswith(BUTTON_PREFIX) and line[1:].isdecimal() and len(line) <= 4:
        index = int(line[1:]) - 1
        if 0 <= index < len(actions):
            return Action(actions[index])
    return Text(line)
