"""The `chatbot` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from chatbot import __version__
from chatbot.dialogs import Engine, Registry, load_flows
from chatbot.dialogs.model import FlowSpec
from chatbot.errors import ChatbotError, ConfigError, FlowSetError
from chatbot.interrupts import ctrl_c_kept

DEFAULT_FLOWS = Path("data/flows")


def flows_folder(path: Path | None) -> Path | None:
    """An explicit --flows folder must exist; the default one is used only when present."""
    if path is not None:
        return path
    return DEFAULT_FLOWS if DEFAULT_FLOWS.is_dir() else None


def load_registry(actions: tuple[str, ...]) -> Registry:
    registry = Registry.with_builtins()
    if actions and os.getcwd() not in sys.path:
        # A module given by its dotted name is looked for in the current folder too, as
        # `python -m` would; after the installed packages, which a stray file must not hide.
        sys.path.append(os.getcwd())
    for spec in actions:
        registry.load(spec)
    return registry


def load_checked_flows(folder: Path | None, registry: Registry) -> dict[str, FlowSpec]:
    """Load and validate flows, or exit 1 listing every problem."""
    try:
        return load_flows(folder, registry)
    except FlowSetError as err:
        for problem in err.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(err.problems)} problem(s) found", err=True)
        sys.exit(1)


def build_engine(folder: Path | None, actions: tuple[str, ...]) -> Engine:
    registry = load_registry(actions)
    return Engine(load_checked_flows(flows_folder(folder), registry), registry)


flows_option = click.option("--flows", "flows_dir", type=click.Path(path_type=Path, file_okay=False),
                            help=f"Folder of your own flows (default: {DEFAULT_FLOWS} when it exists).")
actions_option = click.option("--actions", multiple=True, metavar="MODULE",
                              help="Module (dotted name or .py file) with your own actions and conditions; "
                                   "repeatable.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chatbot")
def cli() -> None:
    """A self-hosted chatbot server with YAML dialog flows."""


@cli.command()
@flows_option
@actions_option
@click.option("--lang", default=None, help="Language to start in (en, ru).")
@click.option("--debug", is_flag=True, help="Show the transitions, state and slots after each turn.")
def chat(flows_dir: Path | None, actions: tuple[str, ...], lang: str | None, debug: bool) -> None:
    """Talk to the bot in this terminal (accounts are kept only until you quit)."""
    from chatbot.terminal import run_chat

    engine = build_engine(flows_dir, actions)
    if lang is not None and lang not in engine.languages:
        raise ConfigError(f"--lang: unknown language {lang!r} (known: {', '.join(sorted(engine.languages))})")
    sys.exit(run_chat(engine, lang=lang, debug=debug))


@cli.group()
def flows() -> None:
    """Check and draw dialog flows."""


@flows.command("check")
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False))
@actions_option
def flows_check(folder: Path | None, actions: tuple[str, ...]) -> None:
    """Validate the built-in flows and those in FOLDER; exit 1 listing every problem."""
    from chatbot.dialogs.flowset import display_path, flow_files

    if folder is not None and folder.is_dir() and not flow_files(folder):
        # Likely the folder above the flows (examples/pizza for examples/pizza/flows): "ok" for the
        # built-ins alone would pass it off as checked.
        click.echo(f"{display_path(folder)}: no flow files (*.yaml or *.yml) in this folder", err=True)
        sys.exit(1)
    loaded = load_checked_flows(flows_folder(folder), load_registry(actions))
    for flow in loaded.values():
        click.echo(f"ok  {flow.name:<14} {len(flow.states):>3} states  {len(flow.transitions):>3} transitions  "
                   f"{flow.version}  {flow.path}")


@flows.command("draw")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this file: .svg renders with Graphviz, anything else gets Mermaid text.")
@flows_option
@actions_option
def flows_draw(name: str, output: Path | None, flows_dir: Path | None, actions: tuple[str, ...]) -> None:
    """Print a Mermaid state diagram of flow NAME, or write it to a file."""
    from chatbot.dialogs import draw

    loaded = load_checked_flows(flows_folder(flows_dir), load_registry(actions))
    flow = loaded.get(name)
    if flow is None:
        raise click.UsageError(f"unknown flow '{name}' (known: {', '.join(sorted(loaded))})")
    if output is None:
        click.echo(draw.mermaid(flow), nl=False)
    elif output.suffix.lower() == ".svg":
        if not draw.graphviz_available():
            raise click.ClickException("cannot write SVG: Graphviz's 'dot' is not installed "
                                       "(apt-get install graphviz); without -o the Mermaid text is printed")
        write_drawing(output, draw.svg(flow))
    else:
        write_drawing(output, draw.mermaid(flow).encode("utf-8"))


def write_drawing(output: Path, data: bytes) -> None:
    """Write what `flows draw` made; a path that cannot take it is reported, not a traceback."""
    if not output.parent.is_dir():
        raise ChatbotError(f"flows draw: {output.parent}: no such folder")
    try:
        output.write_bytes(data)
    except OSError as err:
        reason = err.strerror.lower() if err.strerror else str(err)
        raise ChatbotError(f"flows draw: {output}: cannot write: {reason}") from None
    click.echo(f"wrote {output}")


def _settings_options(command):
    """One option per setting of chatbot.config.Settings (see docs/configuration.md)."""
    from chatbot.config import FIELDS

    for name, spec in reversed(list(FIELDS.items())):
        flag = f"--{name.replace('_', '-')}"
        if spec.type in (bool, "bool"):
            option = click.option(f"{flag}/--no-{name.replace('_', '-')}", name, default=None,
                                  help=spec.metadata["help"])
        elif spec.metadata["listed"]:  # repeated, the values add up, as with `chat --actions`
            option = click.option(flag, name, multiple=True, metavar=name.upper(),
                                   help=spec.metadata["help"] + " Repeatable.")
        else:
            option = click.option(flag, name, default=None, metavar=name.upper(), help=spec.metadata["help"])
        command = option(command)
    return command


@cli.command()
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="TOML file of settings (a [server] table or top-level keys).")
@_settings_options
def serve(config_file: Path | None, **options) -> None:
    """Run the chat server: the web page at /, the WebSocket at /ws, /healthz and /metrics.

    Every setting may also come from the config file or a CHATBOT_<NAME> environment variable;
    the command line wins.
    """
    # A Ctrl-C that comes while the server starts stops it as soon as it has started (the server's
    # own handlers take over from the note). SIGTERM and SIGHUP keep their default action, which
    # ends even a start blocked in a database call.
    with ctrl_c_kept() as early_stops:
        _serve(config_file, early_stops, **options)


def _serve(config_file: Path | None, early_stops: list[int], **options) -> None:
    import asyncio

    from chatbot.accept import raise_open_files_limit
    from chatbot.config import FIELDS, load_settings
    from chatbot.logs import EventLog, setup_logging
    from chatbot.server import ChatServer, serve as run_server
    from chatbot.storage.db import check_database_url

    for name, spec in FIELDS.items():
        if spec.metadata["listed"]:
            options[name] = ",".join(options[name]) or None
    settings = load_settings(options, config_file=config_file)
    # Checked before anything starts: when a worker opened the store, an unusable URL would end
    # only that worker, and the supervisor would start it again.
    if check_database_url(settings.database_url) == "sqlite" and settings.workers > 1:
        raise ConfigError("workers: more than one worker needs a shared database; SQLite is one file for one "
                          "process: use --db postgresql://USER@HOST:PORT/DB")
    registry = load_registry(settings.action_modules)
    engine = Engine(load_checked_flows(settings.flows_dir, registry), registry)
    raise_open_files_limit()  # each connection is a descriptor: allow what the administrator allows

    def announce(line: str) -> None:
        click.echo(line, err=True)

    def run(index: int | None, sockets=None) -> int:
        import logging

        handle = setup_logging(log_dir=settings.logs_dir, max_bytes=settings.log_max_bytes,
                               backup_count=settings.log_backups, console=settings.log_format,
                               level=settings.log_level, process_name=None if index is None else f"w{index}")
        try:
            server = ChatServer(settings, engine, EventLog(logging.getLogger("chatbot.events")))
            asyncio.run(run_server(server, announce=announce, sockets=sockets, early_stops=early_stops))
        finally:
            handle.close()
        if not server.flushed:
            # Threads still wait for the database, and the interpreter would wait for them at exit.
            announce("error: storage: the database stopped answering; what it had not committed was "
                     "never acknowledged, and is not kept")
            sys.stdout.flush()
            os._exit(1)
        return 0

    if settings.workers == 1:
        sys.exit(run(None))
    import shutil
    import tempfile

    from chatbot.metrics import process_ended, share_between_processes
    from chatbot.server import check_listening, listen_error, listening_line
    from chatbot.storage import Store
    from chatbot.supervisor import listening_sockets, supervise

    # Each worker sets up its own logging: one that could not would die of it, to be started again
    # and again. Checked first, as one process does.
    setup_logging(log_dir=settings.logs_dir, max_bytes=settings.log_max_bytes, backup_count=settings.log_backups,
                  console="none", level=settings.log_level).close()
    try:
        sockets = listening_sockets(settings.host, settings.port)
    except OSError as error:
        raise listen_error(settings.host, settings.port, error) from None
    # Opened once here, after the port as with one worker: a database no worker could use (down,
    # refused, its schema newer than this program) is then reported once, instead of every worker
    # dying of it and being started again; and the workers find the migrations done. Closed before
    # the fork, since a connection must not be shared between processes.
    store = Store(settings.database_url)
    store.open()
    try:
        check_listening(settings.database_url)  # a worker needs it beside the store's connections
    finally:
        store.close()
    # The workers share one port, so a scrape of /metrics reaches any one of them: each answers
    # for all, from the files they keep here.
    metrics_folder = tempfile.mkdtemp(prefix="chatbot-metrics-")
    share_between_processes(metrics_folder)
    try:
        code = supervise(settings.workers, lambda index: run(index, sockets), announce=announce,
                         ready=lambda: announce(listening_line(settings.host, sockets[0].getsockname()[1],
                                                               settings.workers)),
                         ended=process_ended, early_stops=early_stops)
    finally:
        shutil.rmtree(metrics_folder, ignore_errors=True)
    announce("stopped")
    sys.exit(code)


from chatbot.replay.command import replay  # noqa: E402  (the command imports this module lazily)

cli.add_command(replay)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `chatbot` console script; `argv` makes it testable."""
    try:
        cli.main(args=argv, prog_name="chatbot", standalone_mode=True)
    except ConfigError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except ChatbotError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
