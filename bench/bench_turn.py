"""CPU per chat turn inside the server, without sockets: what the event loop pays for a message.

Run from the repository root: .venv/bin/python -m bench.bench_turn [--sessions 100] [--turns 20000]

Builds the server as `chatbot serve` does (SQLite in a temporary folder, the JSON log file on,
console off), registers one account per session through the registration dialog, then runs
turns through `SessionManager.handle` from `--sessions` coroutines at once, each sending the
load benchmark's mix of texts and buttons in a closed loop.  Connections are stand-ins that
count the frames they are given, so the figure is the server's own work per turn: text
analysis, state machine, commit, log lines, frame encoding (no WebSocket framing, no socket
calls, no load generator on the same cores).

Prints CPU per turn of the event loop's thread and of the whole process, median [min–max]
of `--repeats` runs.  With --profile FILE it also writes a cProfile of one more run.

`--without logging` (events below the logger's level) and `--without storage` (a turn's write
returns at once, nothing is committed) measure what those parts cost, by difference; they
are for measuring only, never a way to run a server.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import logging
import statistics
import tempfile
import time
from pathlib import Path

from bench.load.generator import Mix
from chatbot.cli import load_checked_flows, load_registry
from chatbot.config import load_settings
from chatbot.dialogs import Engine
from chatbot.logs import EventLog, setup_logging
from chatbot.protocol import encode
from chatbot.server import GC_THRESHOLD, ChatServer


class CountingPeer:
    """A connection stand-in: encodes each frame as the WebSocket handler would, and keeps the last."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self.client_key = "127.0.0.1"
        self.frames = 0
        self.acks = 0
        self.last: dict | None = None
        self.user: str | None = None
        self._ids = 0

    def send(self, frame: dict) -> None:
        encode(frame)
        self.frames += 1
        self.last = frame
        if frame["type"] == "ack":
            self.acks += 1
        elif frame["type"] == "auth":
            self.user = frame["user"]

    def send_queued(self) -> None:
        pass

    def close(self, code: int, reason: str) -> None:
        pass

    def next_id(self) -> str:
        self._ids += 1
        return f"{self.conn_id}-{self._ids}"


async def register(server: ChatServer, index: int) -> tuple[CountingPeer, object]:
    peer = CountingPeer(f"b{index}")
    live = await server.sessions.attach(peer, {"type": "hello"})
    name, password = f"bench{index}", f"bench password {index}"
    steps = [{"type": "action", "name": "register"}, {"type": "message", "text": name},
             {"type": "message", "text": password}, {"type": "message", "text": password}]
    for step in steps:
        await server.sessions.handle(peer, live, {**step, "id": peer.next_id()})
    if peer.user != name:
        raise SystemExit(f"bench_turn: registration of {name} did not log in (last frame {peer.last})")
    return peer, live


async def chat(server: ChatServer, sessions: list, turns: int, seed: int) -> tuple[float, float, float]:
    """Run `turns` turns over the sessions; return (wall s, loop thread CPU s, process CPU s)."""
    remaining = [turns]

    async def one(peer: CountingPeer, live, mix: Mix) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await server.sessions.handle(peer, live, mix.frame(peer))

    acks_before = sum(peer.acks for peer, _ in sessions)
    wall, thread, process = time.perf_counter(), time.thread_time(), time.process_time()
    await asyncio.gather(*(one(peer, live, Mix(seed + i)) for i, (peer, live) in enumerate(sessions)))
    figures = time.perf_counter() - wall, time.thread_time() - thread, time.process_time() - process
    acked = sum(peer.acks for peer, _ in sessions) - acks_before
    if acked != turns:
        raise SystemExit(f"bench_turn: only {acked} of {turns} turns were acknowledged")
    return figures


async def run(args: argparse.Namespace, folder: Path) -> None:
    # environ={}: no CHATBOT_* variable may change what is measured (another database, other flows).
    settings = load_settings({"data_dir": str(folder), "port": 0, "log_format": "none"}, environ={})
    registry = load_registry(settings.action_modules)
    engine = Engine(load_checked_flows(settings.flows_dir, registry), registry)
    events = logging.getLogger("chatbot.events")
    server = ChatServer(settings, engine, EventLog(events))
    await server.start()  # listens on a free port that nothing connects to: turns are handed in directly
    gc.freeze()  # as `chatbot serve` does once started
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    try:
        sessions = await asyncio.gather(*(register(server, i) for i in range(args.sessions)))
        if "logging" in args.without:
            events.setLevel(logging.WARNING)
        if "storage" in args.without:
            async def stored_at_once(write) -> None:
                pass

            server.sessions._save = stored_at_once
        await chat(server, sessions, args.turns // 4, seed=0)  # warm-up
        figures = []
        for repeat in range(args.repeats):
            wall, thread, process = await chat(server, sessions, args.turns, seed=repeat + 1)
            figures.append((args.turns / wall, thread / args.turns * 1e6, process / args.turns * 1e6))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await chat(server, sessions, args.turns, seed=99)
            profiler.disable()
            profiler.dump_stats(args.profile)
    finally:
        await server.stop()
    for label, column, unit in (("turns/s", 0, ""), ("event loop thread CPU per turn", 1, " µs"),
                                ("process CPU per turn (all threads)", 2, " µs")):
        values = [figure[column] for figure in figures]
        print(f"{label:<40} {statistics.median(values):8.1f}{unit} "
              f"[{min(values):.1f}–{max(values):.1f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100, help="sessions chatting at once (default 100)")
    parser.add_argument("--turns", type=int, default=20_000, help="turns per run (default 20,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--without", action="append", default=[], choices=("logging", "storage"),
                        help="leave a part out, to measure its cost by difference (may be repeated)")
    parser.add_argument("--profile", metavar="FILE", help="also write a cProfile of one more run to FILE")
    args = parser.parse_args()
    for name in ("sessions", "turns", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: must be at least 1, got {getattr(args, name)}")
    with tempfile.TemporaryDirectory(prefix="bench-turn-") as folder:
        handle = setup_logging(log_dir=Path(folder) / "logs", console="none")  # as `chatbot serve` does
        try:
            asyncio.run(run(args, Path(folder)))
        finally:
            handle.close()


if __name__ == "__main__":
    main()
