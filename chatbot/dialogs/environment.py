"""What the dialog engine asks of the outside world.

The engine itself does no I/O and holds no clock or random generator: every
such question goes through an `Environment`.  During a turn the engine wraps
it in a `Recorder`, so the answers become part of the turn's result (and of
the logs); `ScriptedEnvironment` answers with recorded results, which makes a
replay from logs produce exactly what the live server produced.

Answers are plain JSON values.  Passwords are arguments, never results, and
never recorded; a question whose answer depends on a secret (does the
confirmation match the password?) is asked here too, so that a replay, which
never sees the secret, gets the recorded answer.
"""

from __future__ import annotations

import random
import time
from typing import Any, Protocol


class Environment(Protocol):
    def now(self) -> float: ...
    def random_index(self, count: int) -> int: ...
    def validate_username(self, username: str) -> str | None: ...
    def validate_password(self, password: str, username: str) -> str | None: ...
    def username_available(self, username: str) -> bool: ...
    def register(self, username: str, password: str) -> dict: ...
    def authenticate(self, username: str, password: str) -> dict: ...
    def secrets_match(self, first: str, second: str) -> bool: ...


#: Every question an Environment answers, in the order of the protocol above.
EFFECTS = ("now", "random_index", "validate_username", "validate_password", "username_available",
           "register", "authenticate", "secrets_match")


def account_answer(result: Any) -> dict:
    """An accounts result (ok, user, reason[, retry_after]) as a JSON-able dict."""
    answer = {"ok": bool(result.ok), "user": result.user, "reason": result.reason}
    retry_after = getattr(result, "retry_after", None)
    if retry_after:
        answer["retry_after"] = round(float(retry_after), 1)
    return answer


class LocalEnvironment:
    """The real world: an accounts service, the wall clock and a random generator."""

    def __init__(self, accounts: Any, *, rng: random.Random | None = None, clock=time.time,
                 client_key: str = "") -> None:
        self.accounts = accounts
        self.rng = rng or random.Random()
        self.clock = clock
        self.client_key = client_key

    def now(self) -> float:
        return self.clock()

    def random_index(self, count: int) -> int:
        return self.rng.randrange(count)

    def validate_username(self, username: str) -> str | None:
        return self.accounts.validate_username(username)

    def validate_password(self, password: str, username: str) -> str | None:
        return self.accounts.validate_password(password, username=username)

    def username_available(self, username: str) -> bool:
        return self.accounts.username_available(username)

    def register(self, username: str, password: str) -> dict:
        return account_answer(self.accounts.register(username, password, client_key=self.client_key))

    def authenticate(self, username: str, password: str) -> dict:
        return account_answer(self.accounts.authenticate(username, password, client_key=self.client_key))

    def secrets_match(self, first: str, second: str) -> bool:
        return self.accounts.passwords_match(first, second)

    def for_client(self, client_key: str) -> "LocalEnvironment":
        """The same world seen from one connection (login throttling is per client too)."""
        return LocalEnvironment(self.accounts, rng=self.rng, clock=self.clock, client_key=client_key)


class Recorder:
    """Passes questions to an environment and keeps each answer, in order."""

    def __init__(self, inner: Environment) -> None:
        self.inner = inner
        self.effects: list[dict] = []

    def _ask(self, name: str, *args: Any) -> Any:
        answer = getattr(self.inner, name)(*args)
        self.effects.append({"name": name, "result": answer})
        return answer

    def now(self) -> float:
        return self._ask("now")

    def random_index(self, count: int) -> int:
        if count <= 1:  # no choice to make: nothing worth recording
            return 0
        return self._ask("random_index", count)

    def validate_username(self, username: str) -> str | None:
        return self._ask("validate_username", username)

    def validate_password(self, password: str, username: str) -> str | None:
        return self._ask("validate_password", password, username)

    def username_available(self, username: str) -> bool:
        return self._ask("username_available", username)

    def register(self, username: str, password: str) -> dict:
        return self._ask("register", username, password)

    def authenticate(self, username: str, password: str) -> dict:
        return self._ask("authenticate", username, password)

    def secrets_match(self, first: str, second: str) -> bool:
        return self._ask("secrets_match", first, second)


class ScriptMismatch(Exception):
    """A replayed turn asked a different question than the recorded one."""

    def __init__(self, expected: str | None, asked: str) -> None:
        super().__init__(expected, asked)
        self.expected = expected
        self.asked = asked

    def __str__(self) -> str:
        if self.expected is None:
            return f"the flow asked '{self.asked}' but the log recorded no more answers"
        return f"the flow asked '{self.asked}' but the log recorded '{self.expected}'"


class ScriptedEnvironment:
    """Answers with the results recorded for one turn, in order."""

    def __init__(self, effects: list[dict]) -> None:
        self.effects = list(effects)
        self.position = 0

    def _answer(self, name: str) -> Any:
        if self.position >= len(self.effects):
            raise ScriptMismatch(None, name)
        effect = self.effects[self.position]
        if effect.get("name") != name:
            raise ScriptMismatch(effect.get("name"), name)
        self.position += 1
        return effect.get("result")

    def now(self) -> float:
        return self._answer("now")

    def random_index(self, count: int) -> int:
        return 0 if count <= 1 else int(self._answer("random_index")) % count

    def validate_username(self, username: str) -> str | None:
        return self._answer("validate_username")

    def validate_password(self, password: str, username: str) -> str | None:
        return self._answer("validate_password")

    def username_available(self, username: str) -> bool:
        return self._answer("username_available")

    def register(self, username: str, password: str) -> dict:
        return self._answer("register")

    def authenticate(self, username: str, password: str) -> dict:
        return self._answer("authenticate")

    def secrets_match(self, first: str, second: str) -> bool:
        return self._answer("secrets_match")
