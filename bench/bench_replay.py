"""Offline replay speed: logged messages replayed per second, reading the JSON log included.

Run from the repository root: .venv/bin/python -m bench.bench_replay [--messages 30000]

First writes a realistic log: visitors arrive, register or log in (with a wrong password
now and then), chat with the built-in flows (greetings, questions with typos, jokes,
the time, a nickname, Russian, text no intent matches), sometimes reconnect and log
out.  Every turn runs through the engine, and its records are written through EventLog
and the JSON file handler with rotation, the same events and fields as the server
writes.  Then replays the whole log three times (read, group, run, compare) and prints
the median rates, by the wall clock and by the CPU time of the process
(the second stays meaningful on a busy machine).
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import tempfile
import time
from pathlib import Path

from chatbot.dialogs import Action, Engine, Registry, SessionState, Text, TurnResult, load_flows
from chatbot.logs import EventLog, setup_logging
from chatbot.replay import read_sessions, replay_session
from chatbot.turnlog import log_turn

CHAT_MIX = [
    "hello", "Hi there!", "what can you do?", "waht can you do", "who am i", "call me Ann", "what is my name",
    "how are you doing", "thanks!", "tell me a joke", "what time is it", "bye", "Привет!", "как дела",
    "зови меня Аня", "что ты умеешь", "qwrtzx plmk", "I had pasta for lunch today", "👋", "/help",
]
PASSWORD = "correct horse battery"


class World:
    """The environment of a live server without password hashing: accounts in a dict, a random generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.users: dict[str, str] = {}
        self.clock = 1_790_000_000.0

    def now(self) -> float:
        return self.clock

    def random_index(self, count: int) -> int:
        return self.rng.randrange(count)

    def validate_username(self, username: str) -> str | None:
        return None if 3 <= len(username) <= 32 else "too_short"

    def validate_password(self, password: str, username: str) -> str | None:
        return None if len(password) >= 8 else "too_short"

    def username_available(self, username: str) -> bool:
        return username.casefold() not in self.users

    def register(self, username: str, password: str) -> dict:
        if username.casefold() in self.users:
            return {"ok": False, "user": None, "reason": "taken"}
        self.users[username.casefold()] = password
        return {"ok": True, "user": username, "reason": None}

    def authenticate(self, username: str, password: str) -> dict:
        if self.users.get(username.casefold()) == password:
            return {"ok": True, "user": username, "reason": None}
        return {"ok": False, "user": None, "reason": "bad_credentials"}

    def secrets_match(self, first: str, second: str) -> bool:
        return first == second


class LoggedSession:
    """One conversation through the engine, logged as chatbot.sessions logs it."""

    def __init__(self, engine: Engine, world: World, log: EventLog, session_id: str, lang: str) -> None:
        self.engine, self.world, self.log, self.id = engine, world, log, session_id
        self.seq = 0
        self.turn = 0
        log.event("session.created", session=session_id, conn="k1", lang=lang)
        result = engine.start(engine.new_session(lang), world)
        self.state: SessionState = result.state
        self.finish(result, None, text=False)

    def say(self, text: str) -> None:
        secret = self.engine.input_kind(self.state) == "password"
        self.log.event("message.in", session=self.id, conn="k1", user=self.state.user, flow=self.state.flow,
                       state=self.state.state, id=f"m{self.turn}", text="[redacted]" if secret else text,
                       secret=secret or None)
        self.finish(self.engine.handle(self.state, Text(text), self.world), f"m{self.turn}", text=True)

    def press(self, name: str) -> None:
        self.log.event("action.in", session=self.id, conn="k1", user=self.state.user, flow=self.state.flow,
                       state=self.state.state, id=f"m{self.turn}", name=name)
        self.finish(self.engine.handle(self.state, Action(name), self.world), f"m{self.turn}", text=False)

    def reconnect(self) -> None:
        self.log.event("session.resumed", session=self.id, conn="k2", user=self.state.user, resent=0)

    def finish(self, result: TurnResult, client_id: str | None, *, text: bool) -> None:
        self.turn += 1
        self.world.clock += 7.5
        self.seq += 1 if text else 0
        self.state = result.state
        replies = []
        for reply in result.replies:
            self.seq += 1
            replies.append({"seq": self.seq, **reply.to_dict(), "in_reply_to": client_id})
        log_turn(self.log, self.id, result, replies)


def write_log(log_dir: Path, engine: Engine, messages: int, seed: int = 7) -> int:
    """Write conversations until `messages` inputs are logged; return how many were."""
    rng = random.Random(seed)
    world = World(rng)
    handle = setup_logging(log_dir=log_dir, console="none", max_bytes=20 * 1024 * 1024, backup_count=50)
    try:
        log = EventLog(logging.getLogger("chatbot.events"))
        written, number = 0, 0
        while written < messages:
            number += 1
            session = LoggedSession(engine, world, log, f"{number:016x}", rng.choice(["en", "en", "en", "ru"]))
            user = f"user{number}"
            if number > 10 and rng.random() < 0.3:  # a returning user, sometimes mistyping the password first
                user = f"user{rng.randrange(1, number - 5)}"
                session.press("login")
                session.say(user)
                if rng.random() < 0.3:
                    session.say("wrong password")
                    session.say(user)
                session.say(PASSWORD)
            else:
                session.press("register")
                session.say(user)
                session.say(PASSWORD)
                session.say(PASSWORD)
            for _ in range(rng.randrange(4, 14)):
                if rng.random() < 0.05:
                    session.reconnect()
                session.say(rng.choice(CHAT_MIX))
            if rng.random() < 0.5:
                session.press("logout")
            written += session.turn - 1
        return written
    finally:
        handle.close()


def replay_once(engine: Engine, log_dir: Path) -> tuple[float, float, int, int]:
    """Wall and CPU seconds for reading and replaying the whole log; messages replayed; sessions not same."""
    wall, cpu = time.perf_counter(), time.process_time()
    logs = read_sessions([log_dir])
    outcomes = [replay_session(engine, session) for session in logs.sessions.values()]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    replayed = sum(outcome.steps - 1 for outcome in outcomes)
    not_same = sum(1 for outcome in outcomes if outcome.status != "same")
    return wall, cpu, replayed, not_same


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30000, help="logged messages to replay")
    args = parser.parse_args(argv)
    registry = Registry.with_builtins()
    engine = Engine(load_flows(None, registry), registry)
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        started = time.perf_counter()
        written = write_log(log_dir, engine, args.messages)
        size = sum(path.stat().st_size for path in log_dir.glob("chatbot.log*"))
        files = len(list(log_dir.glob("chatbot.log*")))
        print(f"wrote {written:,} messages in {time.perf_counter() - started:.1f} s: "
              f"{size / 1e6:.1f} MB in {files} file(s)")
        runs = [replay_once(engine, log_dir) for _ in range(3)]
    wall = statistics.median(run[0] for run in runs)
    cpu = statistics.median(run[1] for run in runs)
    replayed, not_same = runs[0][2], runs[0][3]
    print(f"replayed {replayed:,} messages, median of 3 runs: {replayed / wall:,.0f} messages/s "
          f"({wall:.2f} s wall), {replayed / cpu:,.0f} messages/s of CPU time ({cpu:.2f} s); "
          f"{not_same} session(s) not same")

if __name__ == "__main__":
    main()
