"""A deterministic world for engine tests: accounts in a dict, a fixed clock, no randomness."""

from __future__ import annotations

from chatbot.dialogs import Action, Engine, Registry, Text, load_flows


class MemoryWorld:
    """Implements the engine's Environment with plain data (the engine's injection point)."""

    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.users: dict[str, tuple[str, str]] = {}
        self.clock = now
        self.failures = 0

    def now(self) -> float:
        return self.clock

    def random_index(self, count: int) -> int:
        return 0

    def validate_username(self, username: str) -> str | None:
        if len(username) < 3:
            return "too_short"
        return None if username.replace("_", "").isalnum() else "bad_characters"

    def validate_password(self, password: str, username: str) -> str | None:
        return None if len(password) >= 8 and password != username else "too_short"

    def username_available(self, username: str) -> bool:
        return username.casefold() not in self.users

    def register(self, username: str, password: str) -> dict:
        if username.casefold() in self.users:
            return {"ok": False, "user": None, "reason": "taken"}
        self.users[username.casefold()] = (username, password)
        return {"ok": True, "user": username, "reason": None}

    def authenticate(self, username: str, password: str) -> dict:
        if self.failures >= 3:
            return {"ok": False, "user": None, "reason": "throttled", "retry_after": 4.0}
        found = self.users.get(username.casefold())
        if found and found[1] == password:
            self.failures = 0
            return {"ok": True, "user": found[0], "reason": None}
        self.failures += 1
        return {"ok": False, "user": None, "reason": "bad_credentials"}

    def secrets_match(self, first: str, second: str) -> bool:
        return first == second


def make_engine(folder=None, registry=None) -> Engine:
    registry = registry or Registry.with_builtins()
    return Engine(load_flows(folder, registry), registry)


class Conversation:
    """Drives one session through the engine, keeping the last result."""

    def __init__(self, engine: Engine, world=None, lang: str = "en") -> None:
        self.engine = engine
        self.world = world or MemoryWorld()
        self.result = engine.start(engine.new_session(lang), self.world)

    @property
    def state(self):
        return self.result.state

    @property
    def where(self) -> str:
        return f"{self.state.flow}:{self.state.state}"

    @property
    def texts(self) -> list[str]:
        return [reply.text for reply in self.result.replies]

    def say(self, text: str):
        self.result = self.engine.handle(self.state, Text(text), self.world)
        return self.result

    def press(self, action: str):
        self.result = self.engine.handle(self.state, Action(action), self.world)
        return self.result

    def register(self, username: str = "ann", password: str = "correct horse") -> None:
        self.press("register")
        self.say(username)
        self.say(password)
        self.say(password)
