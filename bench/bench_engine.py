"""Memory per session and time per message of the dialog engine on the built-in flows.

Run: .venv/bin/python bench/bench_engine.py [--sessions 10000] [--messages 3000]

Memory: 10,000 `SessionState` objects, as a server holds them between turns
(a new visitor in the hub, and a logged-in user in chat with a nickname),
measured with tracemalloc.  Time: `Engine.handle` on a mix of what people
type in the chat flow (greetings, questions with typos, a slot-setting
pattern, Russian, text no intent matches), median of 3 runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

from chatbot.dialogs import Engine, Registry, SessionState, Text, load_flows

CHAT_MIX = [
    "hello", "Hi there!", "what can you do?", "waht can you do", "who am i", "call me Ann", "what is my name",
    "how are you doing", "thanks!", "tell me a joke", "what time is it", "bye", "Привет!", "как дела",
    "зови меня Аня", "что ты умеешь", "qwrtzx plmk", "I had pasta for lunch today", "👋", "/help",
]


class QuietWorld:
    """An Environment with fixed answers: the engine's own cost, without accounts or hashing."""

    def now(self) -> float:
        return 1_790_000_000.0

    def random_index(self, count: int) -> int:
        return 0

    def validate_username(self, username: str) -> str | None:
        return None

    def validate_password(self, password: str, username: str) -> str | None:
        return None

    def username_available(self, username: str) -> bool:
        return True

    def register(self, username: str, password: str) -> dict:
        return {"ok": True, "user": username, "reason": None}

    def authenticate(self, username: str, password: str) -> dict:
        return {"ok": True, "user": username, "reason": None}

    def secrets_match(self, first: str, second: str) -> bool:
        return first == second


def build() -> Engine:
    registry = Registry.with_builtins()
    return Engine(load_flows(None, registry), registry)


def kb_per_session(count: int, make) -> float:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    sessions = [make(i) for i in range(count)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert len(sessions) == count
    return grown / count / 1024


def logged_in(engine: Engine, i: int) -> SessionState:
    chat = engine.flows["chat"]
    return SessionState(flow="chat", state="listening", slots={"username": f"user{i:05d}", "nickname": f"Nick{i}"},
                        lang="en" if i % 2 else "ru", user=f"user{i:05d}", flow_version=chat.version)


def us_per_message(engine: Engine, world: QuietWorld, messages: int) -> float:
    session = logged_in(engine, 1)
    events = [Text(CHAT_MIX[i % len(CHAT_MIX)]) for i in range(messages)]
    start = time.perf_counter()
    for event in events:
        # every message starts from the same logged-in state, as many sessions would
        engine.handle(session, event, world)
    return (time.perf_counter() - start) / messages * 1e6


def us_per_message_of(engine: Engine, world: QuietWorld, text: str, number: int = 500) -> float:
    session = logged_in(engine, 1)
    event = Text(text)
    start = time.perf_counter()
    for _ in range(number):
        engine.handle(session, event, world)
    return (time.perf_counter() - start) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=3_000)
    args = parser.parse_args()

    start = time.perf_counter()
    engine = build()
    print(f"engine built in {(time.perf_counter() - start) * 1000:.0f} ms "
          f"({len(engine.flows)} flows, {sum(len(f.states) for f in engine.flows.values())} states)")

    fresh = kb_per_session(args.sessions, lambda i: engine.new_session("en"))
    user = kb_per_session(args.sessions, lambda i: logged_in(engine, i))
    print(f"{args.sessions} sessions: {fresh:.2f} KB/session new in the hub, "
          f"{user:.2f} KB/session logged in with 2 slots")

    world = QuietWorld()
    us_per_message(engine, world, 200)  # warm the intent indexes
    runs = [us_per_message(engine, world, args.messages) for _ in range(3)]
    print(f"chat mix of {len(CHAT_MIX)} texts: {statistics.median(runs):.0f} µs/message "
          f"(median of 3 runs of {args.messages}; runs: {', '.join(f'{r:.0f}' for r in runs)})")
    for text in ("hello", "waht can you do", "call me Ann", "qwrtzx plmk", "Привет!"):
        single = [us_per_message_of(engine, world, text) for _ in range(3)]
        print(f"  {text!r:22} {statistics.median(single):6.0f} µs/message")


if __name__ == "__main__":
    main()
