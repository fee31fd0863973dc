"""The load benchmark of `chatbot serve` against a bare Tornado echo server (see docs/performance.md).

    .venv/bin/python -m bench.run_load --quick     # about 2 minutes
    .venv/bin/python -m bench.run_load             # the full run behind the targets, about 10 minutes
    .venv/bin/python -m bench.run_load --workers 2 --db postgresql://postgres@127.0.0.1:5432/test

Everything runs on 127.0.0.1: the servers and the load generator processes
share this machine's cores, which every figure's CPU columns make visible.
Progress goes to stderr, the figures to stdout (and to --json FILE).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

from bench.load.report import render
from bench.load.suite import Plan, Suite
from chatbot.accept import raise_open_files_limit

PRESETS = {
    "full": Plan(profile_seconds=10.0),
    "quick": Plan(concurrency=(100,), duration=3.0, warmup=1.0, open_rate=300.0, open_connections=300,
                  idle_steps=(1000,), sessions=300, logins=30, profile_seconds=3.0, replay_messages=5000),
    "smoke": Plan(concurrency=(5,), duration=1.0, warmup=0.3, repeats=1, procs=1, open_rate=20.0, open_connections=5,
                  idle_steps=(50,), sessions=20, logins=2, login_concurrency=2, session_concurrency=10,
                  profile_seconds=0.0, replay_messages=300),
}


def counts(text: str) -> tuple[int, ...]:
    """'100,1000' -> (100, 1000); '0' or '' -> ()."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if any(value < 0 for value in values):
        raise argparse.ArgumentTypeError(f"expected numbers of at least 0, got {text!r}")
    return tuple(value for value in values if value)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run_load", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", const="quick", dest="preset", help="a short run")
    mode.add_argument("--smoke", action="store_const", const="smoke", dest="preset",
                      help="a tiny run that only proves the harness works (seconds)")
    p.set_defaults(preset="full")
    p.add_argument("--concurrency", type=counts, help="closed-loop connection counts, e.g. 100,1000")
    p.add_argument("--duration", type=float, help="seconds measured per run")
    p.add_argument("--warmup", type=float, help="seconds of load before each measured window")
    p.add_argument("--repeats", type=int, help="runs of each figure (median and range are printed)")
    p.add_argument("--procs", type=int, help="load generator processes for the closed and open loops")
    p.add_argument("--open-rate", type=float, help="messages per second offered in the open loop")
    p.add_argument("--open-connections", type=int, help="connections the open loop spreads them over (0: skip)")
    p.add_argument("--idle", type=counts, dest="idle_steps", help="idle connection counts, e.g. 1000,10000 (0: skip)")
    p.add_argument("--sessions", type=int, help="sessions created (and resumed) per run (0: skip)")
    p.add_argument("--logins", type=int, help="logins per run (0: skip)")
    p.add_argument("--profile", type=float, dest="profile_seconds", metavar="SECONDS",
                   help="profile the chat server with py-spy for this long under the closed loop (0: no profile)")
    p.add_argument("--replay-messages", type=int, help="logged messages bench/bench_replay.py replays (0: skip)")
    p.add_argument("--workers", type=int, help="passed to chatbot serve as --workers")
    p.add_argument("--db", help="passed to chatbot serve as --db (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="any other argument for chatbot serve, repeatable (--server-arg=--blocking-threads=8)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--work-dir", type=Path, help="keep servers' data and logs here (default: a temporary folder, "
                                                  "removed at the end)")
    return p


def plan_from(args: argparse.Namespace) -> Plan:
    plan = PRESETS[args.preset]
    overrides = {field.name: getattr(args, field.name) for field in dataclasses.fields(Plan)
                 if getattr(args, field.name, None) is not None}
    server_args = list(plan.server_args)
    if args.workers is not None:
        server_args += ["--workers", str(args.workers)]
    if args.db:
        server_args += ["--db", args.db]
    server_args += args.server_arg
    overrides["server_args"] = tuple(server_args)
    return dataclasses.replace(plan, **overrides)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    plan = plan_from(args)
    if plan.repeats < 1 or plan.duration <= 0 or plan.procs < 1:
        print("run_load: --repeats and --procs must be at least 1 and --duration above 0", file=sys.stderr)
        return 2
    files = raise_open_files_limit()
    needed = max(plan.idle_steps + plan.concurrency + (plan.open_connections,)) + 100
    if files < needed:
        print(f"run_load: open files limit {files} is below the {needed} this plan needs; "
              "raise the hard limit (ulimit -Hn) or lower --idle", file=sys.stderr)
        return 2
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="chatbot-load-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = Suite(plan, work).run()
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(render(results))
    if args.json:
        results.save(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
