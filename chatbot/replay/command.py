"""`chatbot replay`: run logged sessions again and report where today's flows answer differently.

Exit status: 0 every replayed session is the same, 1 at least one diverged, 2 the input
cannot be used (a missing file, no readable record, no such session, flows that do not load).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path

import click

from chatbot.dialogs import Engine
from chatbot.errors import ConfigError, FlowSetError
from chatbot.replay.reader import LogSet, RecordedSession, UnusableInput, log_paths, read_sessions
from chatbot.replay.report import render_json, render_text, summarize
from chatbot.replay.runner import replay_session
from chatbot.replay.transcript import transcript_json, transcript_text

__all__ = ["ReplayOptions", "main", "replay", "run_replay"]

#: Warnings printed on stderr; the JSON report holds more.
SHOWN_WARNINGS = 20


@dataclass
class ReplayOptions:
    logs: tuple[Path, ...]
    sessions: tuple[str, ...] = ()
    flows_dir: Path | None = None
    actions: tuple[str, ...] = ()
    output_format: str = "text"
    transcript: str | None = None
    live: str | None = None
    speed: float = 0.0
    concurrency: int = 50
    timeout: float = 10.0


def run_replay(options: ReplayOptions, *, echo=click.echo) -> int:
    """Do what the options say, printing through `echo`; return the exit status."""
    printable = _printable(echo)
    try:
        return _run(options, printable)
    except UnusableInput as problem:
        printable(f"replay: {problem}", err=True)
        return 2


#: What a visitor's text must not carry to an operator's terminal, and the escape shown instead
#: (valid in JSON as well): control characters but the newline (ESC starts sequences that clear
#: the screen, set the title or the clipboard; a carriage return overwrites the line) and the
#: marks that reorder text (U+202E shows "evil" as "live").
TERMINAL_ESCAPES = {code: f"\\u{code:04x}" for code in (*range(0x00, 0x0A), *range(0x0B, 0x20), *range(0x7F, 0xA0),
                                                        0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                                        *range(0x2066, 0x206A))}


def _printable(echo):
    """`echo` for what the logs hold: a logged text may hold lone surrogates, which no stream takes,
    and a visitor's terminal control characters, which would act on the operator's terminal."""
    def printable(text: str = "", **options) -> None:
        if isinstance(text, str):
            text = text.translate(TERMINAL_ESCAPES)
            if not text.isascii():
                text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        echo(text, **options)
    return printable


def _run(options: ReplayOptions, echo) -> int:
    _check_paths(options.logs)
    started = time.perf_counter()
    logs = read_sessions(options.logs)
    _show_warnings(logs, echo)
    if logs.records == 0:
        raise UnusableInput(f"no readable records in {', '.join(str(p) for p in options.logs)}")
    if options.transcript is not None:
        session = _pick(logs, options.transcript)
        echo(transcript_json(session) if options.output_format == "json" else transcript_text(session), nl=False)
        return 0
    # A session named twice (by its id and a prefix of it) is replayed once.
    chosen = list({id(session): session for session in (_pick(logs, wanted) for wanted in options.sessions)}
                  .values()) if options.sessions else list(logs.sessions.values())
    if not chosen:
        raise UnusableInput(f"no chat sessions in {', '.join(logs.files)} (no session.created, message.in or "
                            "reply.out records)")
    engine = _engine(options.flows_dir, options.actions)
    if options.live is not None:
        from chatbot.replay.live import replay_live

        outcomes = asyncio.run(replay_live(engine, chosen, options.live, speed=options.speed,
                                           concurrency=options.concurrency, timeout=options.timeout))
    else:
        outcomes = [replay_session(engine, session) for session in chosen]
    summary = summarize(outcomes, seconds=time.perf_counter() - started, warnings=logs.warning_count,
                        mode="offline" if options.live is None else "live")
    if options.output_format == "json":
        echo(render_json(outcomes, summary, files=logs.files, warnings=logs.warnings), nl=False)
    else:
        echo(render_text(outcomes, summary, files=logs.files), nl=False)
    return summary.exit_code


def _check_paths(paths: tuple[Path, ...]) -> None:
    """A path that names nothing is a mistake, not an empty log (a base file may be mid-rotation)."""
    try:
        for path in log_paths(paths):
            if path.exists():
                continue
            siblings = list(path.parent.glob(path.name + ".*")) if path.parent.is_dir() else []
            if not siblings:
                raise UnusableInput(f"{path}: no such file")
    except OSError as error:  # a name too long for the file system, a folder not allowed to be read
        where = error.filename or ", ".join(str(path) for path in paths)
        raise UnusableInput(f"{where}: {(error.strerror or str(error)).lower()}") from None


def _show_warnings(logs: LogSet, echo) -> None:
    for text in logs.warnings[:SHOWN_WARNINGS]:
        echo(f"warning: {text}", err=True)
    hidden = logs.warning_count - min(len(logs.warnings), SHOWN_WARNINGS)
    if hidden > 0:
        echo(f"warning: … and {hidden} more (see --format json)", err=True)


def _pick(logs: LogSet, wanted: str) -> RecordedSession:
    """A session by its id or an unambiguous beginning of it."""
    if wanted in logs.sessions:
        return logs.sessions[wanted]
    found = [session for key, session in logs.sessions.items() if key.startswith(wanted)]
    if len(found) == 1:
        return found[0]
    if found:
        raise UnusableInput(f"session {wanted!r} is ambiguous: {', '.join(s.id for s in found[:5])}")
    raise UnusableInput(f"no session {wanted!r} in {', '.join(logs.files)}")


def _engine(flows_dir: Path | None, actions: tuple[str, ...]) -> Engine:
    # Imported here: chatbot.cli imports this module to register the command.
    from chatbot.cli import flows_folder, load_registry
    from chatbot.dialogs import load_flows

    try:
        registry = load_registry(actions)
        return Engine(load_flows(flows_folder(flows_dir), registry), registry)
    except ConfigError as problem:
        raise UnusableInput(str(problem)) from None
    except FlowSetError as problems:
        raise UnusableInput(f"the flows do not load ({len(problems.problems)} problem(s)):\n{problems}") from None


class FiniteFloat(click.FloatRange):
    """A number in a range that is a number: NaN passes every comparison, and infinity means nothing here."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


@click.command("replay")
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--session", "sessions", multiple=True, metavar="ID",
              help="Replay only this session (an id or its unambiguous beginning); repeatable.")
@click.option("--flows", "flows_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Folder of your own flows (default: data/flows when it exists).")
@click.option("--actions", multiple=True, metavar="MODULE",
              help="Module (dotted name or .py file) with your own actions and conditions; repeatable.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Report for a person or for a program.")
@click.option("--transcript", metavar="SESSION",
              help="Print this session as a conversation (time, who, text, state changes) instead.")
@click.option("--live", metavar="URL",
              help="Send the sessions to a running server (ws://HOST:PORT/ws) instead of replaying offline.")
@click.option("--speed", type=FiniteFloat(min=0), default=0.0, show_default=True, metavar="X",
              help="With --live: play the recorded pauses this many times faster (1 = as recorded); "
                   "0 sends each message as soon as the previous one is answered.")
@click.option("--concurrency", type=click.IntRange(min=1), default=50, show_default=True, metavar="N",
              help="With --live: sessions played at the same time, each over its own connection.")
@click.option("--timeout", type=FiniteFloat(min=0.1), default=10.0, show_default=True, metavar="SECONDS",
              help="With --live: seconds to wait for each answer of the server.")
@click.pass_context
def replay(ctx: click.Context, **options) -> None:
    """Replay logged chat sessions through the current flows (or a live server) and compare.

    LOGS are log files or log folders; a chatbot.log brings its rotated files (.1, .2.gz, …)
    along, oldest first. Each session is reported `same`, or `diverged` at the first step whose
    replies, transitions or slots differ from the log. Exit 0 when all are the same, 1 when any
    diverged, 2 when the input cannot be used.
    """
    ctx.exit(run_replay(ReplayOptions(**options)))


def main(argv: list[str] | None = None) -> int:
    """Run `replay` as its own program (for tests and scripts); return the exit status."""
    try:
        status = replay.main(args=argv, prog_name="chatbot replay", standalone_mode=False)
    except click.ClickException as problem:
        problem.show()
        return problem.exit_code
    except click.exceptions.Abort:
        return 1
    return status if isinstance(status, int) else 0
