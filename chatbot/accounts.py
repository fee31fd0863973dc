"""Accounts: username rules, the password policy, argon2id hashes, login throttling.

Usernames
    3 to 32 characters, counted after NFKC normalisation: Unicode letters
    (with the combining marks some scripts need after a letter), decimal
    digits, '_', '-' and '.'; no spaces, and none of the letters and marks
    that show as nothing. An account keeps its name as typed
    (in NFC, so the same name typed two ways is stored one way) and is found
    by its key, NFKC + casefold: 'Bob', 'BOB' and 'ｂｏｂ' are one account.

Passwords
    Following NIST SP 800-63B (5.1.1.2), a password is normalised with NFKC
    before it is counted or hashed, so a password typed on another keyboard or
    system still matches, and every code point counts as one character:
    8 to 128 characters, any Unicode (Cyrillic, emoji, spaces inside), not
    only whitespace, not the username (compared by key).

Hashes
    argon2id with the OWASP Password Storage Cheat Sheet's recommended
    minimum: 19 MiB of memory, 2 iterations, 1 degree of parallelism. A
    stored hash made with other parameters is replaced at the next login.

Every method is synchronous and a password check costs tens of milliseconds
of CPU on purpose: callers run them off the event loop. Passwords reach only
the hasher; nothing here logs.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable

import argon2
from argon2.exceptions import VerifyMismatchError

from chatbot.storage import Store, UserRecord, UsernameTaken

USERNAME_MIN, USERNAME_MAX = 3, 32
USERNAME_PUNCTUATION = frozenset("_-.")
#: Unicode's Default_Ignorable_Code_Point characters that a username's letter and mark rules
#: would let in: they show as nothing, so 'ann' plus one of them would pass for 'ann'
#: (Hangul fillers are letters; the grapheme joiner and variation selectors are marks).
INVISIBLE = frozenset(chr(code) for first, last in (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0x1D173, 0x1D17A), (0xE0100, 0xE01EF),
) for code in range(first, last + 1))

# OWASP Password Storage Cheat Sheet, Argon2id: m=19 MiB, t=2, p=1.
OWASP_HASHER_PARAMETERS = dict(memory_cost=19 * 1024, time_cost=2, parallelism=1)


def username_key(username: str) -> str:
    """The form two usernames are compared in (NFKC + casefold)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def _shows_nothing(char: str) -> bool:
    """Whitespace, a format or control character (a zero-width space or joiner, a direction mark),
    or another of the INVISIBLE: a password made only of these is one no one can see or retype."""
    return char.isspace() or unicodedata.category(char) in ("Cf", "Cc") or char in INVISIBLE


def _password_bytes(password: str) -> bytes:
    # surrogatepass: a lone surrogate from a client must not crash a login.
    return unicodedata.normalize("NFKC", password).encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 8
    max_length: int = 128


@dataclass(frozen=True)
class AccountResult:
    ok: bool
    user: str | None = None  # the username as stored, when ok
    reason: str | None = None  # invalid_username | weak_password | taken | bad_credentials | throttled
    detail: str | None = None  # for invalid_username and weak_password: the rule broken ('too_short', ...)
    retry_after: float | None = None  # for throttled: seconds until the next attempt is looked at


@dataclass(frozen=True)
class ThrottlePolicy:
    delay_after: int = 3  # failures before attempts are delayed
    first_delay: float = 1.0  # seconds, doubled by every further failure
    max_delay: float = 60.0
    lock_after: int = 10  # failures before each further one locks the key
    lock_seconds: float = 15 * 60
    forget_after: float = 24 * 3600  # a key without failures for this long starts afresh
    max_keys: int = 100_000  # beyond this many, the oldest keys not blocked are forgotten


@dataclass
class _Failures:
    count: int
    last: float  # clock time of the last failure
    blocked_until: float
    pending: int = 0  # attempts begun and not yet ended


#: Seconds after an account is made during which its registration, run again on the same
#: connection with the same password, answers as the first run did (see Accounts._made_here).
REGISTRATION_RETRY = 60
#: Accounts whose making connection is remembered (the newest; see Accounts._made_here).
MAKERS_KEPT = 10_000


class Throttle:
    """Refuses login attempts for a while after repeated failures, per key.

    A key is an account or a client (connection id or address); an attempt
    waits for the most blocked of its keys. After ``delay_after`` failures a
    key is blocked ``first_delay`` seconds, then twice as long after each
    further failure (1, 2, 4, 8 ... up to ``max_delay``); from ``lock_after``
    failures on, each failure locks it for ``lock_seconds``.

    The counts live in this object, so they are per process: a restart
    forgets them, and each server process counts on its own.
    """

    def __init__(
        self, policy: ThrottlePolicy = ThrottlePolicy(), *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, _Failures] = OrderedDict()  # oldest failure first

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until an attempt with these keys is looked at; 0 when it may go ahead."""
        now = self._clock()
        with self._lock:
            self._forget_old(now)
            blocked = [self._keys[key].blocked_until - now for key in keys if key in self._keys]
        return max([0.0, *blocked])

    def begin(self, keys: Iterable[str]) -> float:
        """Start an attempt with these keys: 0 when it may go ahead (then call `end`), else seconds to wait.

        Attempts run on several threads at once, each checking a password for tens of
        milliseconds: counted only when they fail, a burst would all pass a check made before
        any of them failed. So an attempt in flight counts as a failure to come, and once the
        next failure would block a key, its attempts go one at a time.
        """
        keys = list(keys)
        now = self._clock()
        policy = self.policy
        with self._lock:
            self._forget_old(now)
            wait = 0.0
            for key in keys:
                entry = self._keys.get(key)
                if entry is None:
                    continue
                if entry.blocked_until > now:
                    wait = max(wait, entry.blocked_until - now)
                elif entry.pending and entry.count + entry.pending >= policy.delay_after:
                    wait = max(wait, policy.first_delay)
            if wait > 0:
                return wait
            for key in keys:
                entry = self._keys.get(key)
                if entry is None:
                    entry = self._keys[key] = _Failures(0, now, now)
                entry.pending += 1
        return 0.0

    def end(self, keys: Iterable[str]) -> None:
        """An attempt `begin` let through is over (after `failed` or `succeeded`, if either)."""
        with self._lock:
            for key in keys:
                entry = self._keys.get(key)
                if entry is None:
                    continue
                entry.pending = max(0, entry.pending - 1)
                if entry.count == 0 and entry.pending == 0:
                    del self._keys[key]

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        policy = self.policy
        with self._lock:
            self._forget_old(now)
            for key in keys:
                entry = self._keys.pop(key, None) or _Failures(0, now, now)
                entry.count += 1
                entry.last = now
                if entry.count >= policy.lock_after:
                    entry.blocked_until = now + policy.lock_seconds
                elif entry.count >= policy.delay_after:
                    delay = policy.first_delay * 2 ** (entry.count - policy.delay_after)
                    entry.blocked_until = now + min(delay, policy.max_delay)
                self._keys[key] = entry
            self._forget_old(now)

    @property
    def tracked_keys(self) -> int:
        """How many keys have failures on record."""
        return len(self._keys)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)

    def _forget_old(self, now: float) -> None:
        keys, policy = self._keys, self.policy
        while keys:  # oldest failure first
            oldest = next(iter(keys.values()))
            if now - oldest.last <= policy.forget_after or oldest.blocked_until > now:
                break
            keys.popitem(last=False)
        while len(keys) > policy.max_keys:
            self._forget_one(now)

    def _forget_one(self, now: float) -> None:
        """Forget the key a full table can best spare. Failures under throwaway names must push out
        neither a running lock nor a count on its way to one (9 failures, the 10th locks): a key
        not blocked with fewer than `delay_after` failures goes first, oldest first; the keys
        passed over move to the end, so the next look starts past them. Without such a key, the
        oldest not blocked goes, and only in a table of nothing but locks the oldest lock."""
        keys, light = self._keys, self.policy.delay_after
        unblocked = None
        for _ in range(len(keys)):
            key, entry = next(iter(keys.items()))
            if entry.blocked_until <= now:
                if entry.count < light:
                    del keys[key]
                    return
                unblocked = unblocked or key
            keys.move_to_end(key)
        del keys[unblocked or next(iter(keys))]


class Accounts:
    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.monotonic,
        hasher: argon2.PasswordHasher | None = None,
        policy: PasswordPolicy = PasswordPolicy(),
        throttle: Throttle | None = None,
    ) -> None:
        self.store = store
        if hasher is None:
            hasher = argon2.PasswordHasher(type=argon2.Type.ID, **OWASP_HASHER_PARAMETERS)
        self.hasher = hasher
        self.policy = policy
        self.throttle = throttle if throttle is not None else Throttle(clock=clock)
        #: Accounts made lately → (the connection that made it, when): see _made_here.
        self._makers: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()
        # Checked in place of a real hash when the username is unknown, so the
        # answer takes as long as for a wrong password.
        self._dummy_hash = self.hasher.hash(secrets.token_bytes(16))

    def validate_username(self, username: str) -> str | None:
        """None when the name may be registered, else 'too_short', 'too_long' or 'bad_characters'."""
        name = unicodedata.normalize("NFKC", username)
        if len(name) < USERNAME_MIN:
            return "too_short"
        if len(name) > USERNAME_MAX:
            return "too_long"
        for position, char in enumerate(name):
            category = unicodedata.category(char)
            allowed = char not in INVISIBLE and (
                category[0] == "L"
                or category == "Nd"
                or char in USERNAME_PUNCTUATION
                or (category in ("Mn", "Mc") and position > 0)
            )
            if not allowed:
                return "bad_characters"
        if not any(char.isalnum() for char in name):  # '...' or '-_-' names no one
            return "bad_characters"
        return None

    @staticmethod
    def passwords_match(first: str, second: str) -> bool:
        """Whether two typed passwords are one password, as hashing sees them (NFKC), in constant time."""
        return hmac.compare_digest(_password_bytes(first), _password_bytes(second))

    def validate_password(self, password: str, *, username: str | None = None) -> str | None:
        """None when the password fits the policy, else 'too_short', 'too_long',
        'bad_characters' (a lone surrogate), 'only_whitespace' or 'same_as_username'."""
        text = unicodedata.normalize("NFKC", password)
        if len(text) < self.policy.min_length:
            return "too_short"
        if len(text) > self.policy.max_length:
            return "too_long"
        if any(unicodedata.category(char) == "Cs" for char in text):
            return "bad_characters"
        if all(_shows_nothing(char) for char in text):
            return "only_whitespace"
        if username and username_key(text) == username_key(username):
            return "same_as_username"
        return None

    def username_available(self, username: str) -> bool:
        """True when the name is valid and no account has it."""
        if self.validate_username(username) is not None:
            return False
        return self.store.find_user(username_key(username)) is None

    def register(self, username: str, password: str, *, client_key: str = "") -> AccountResult:
        problem = self.validate_username(username)
        if problem:
            return AccountResult(False, reason="invalid_username", detail=problem)
        problem = self.validate_password(password, username=username)
        if problem:
            return AccountResult(False, reason="weak_password", detail=problem)
        key = username_key(username)
        existing = self.store.find_user(key)
        if existing is None:
            stored_name = unicodedata.normalize("NFC", username)
            try:
                self.store.create_user(stored_name, key, self.hasher.hash(_password_bytes(password)))
            except UsernameTaken:  # registered since the check above
                existing = self.store.find_user(key)
            else:
                self._remember_maker(key, client_key)
                return AccountResult(True, user=stored_name)
        if existing is not None and self._made_here(existing, password, client_key):
            return AccountResult(True, user=existing.username)
        return AccountResult(False, reason="taken")

    def _remember_maker(self, key: str, client_key: str) -> None:
        if not client_key:
            return
        with self._lock:
            self._makers[key] = (client_key, time.monotonic())
            while len(self._makers) > MAKERS_KEPT:
                self._makers.popitem(last=False)

    def _made_here(self, user: UserRecord, password: str, client_key: str) -> bool:
        """Whether this registration is the one that made `user`, run again.

        The account is committed on its own, before the turn that registers it: a turn run again
        after another server's turn of the session came first finds the account it made. It
        runs again on the same connection, with the same password, moments later; anyone
        else with that name and password is told the name is taken, as they would be without it.
        """
        with self._lock:
            maker = self._makers.get(user.username_key)
        if not client_key or maker is None or maker[0] != client_key:
            return False
        if time.monotonic() - maker[1] > REGISTRATION_RETRY:
            return False
        return self._verify(user.password_hash, _password_bytes(password))

    def authenticate(self, username: str, password: str, *, client_key: str = "") -> AccountResult:
        """Check a login; the answer for an unknown user is the wrong-password answer."""
        # A name that breaks the rules cannot exist: no query, and no account key to count on.
        key = username_key(username) if self.validate_username(username) is None else None
        keys = [f"user:{key}"] if key else []
        if client_key:
            keys.append(f"client:{client_key}")
        wait = self.throttle.begin(keys)
        if wait > 0:
            return AccountResult(False, reason="throttled", retry_after=wait)
        try:
            user = self.store.find_user(key) if key else None
            secret = _password_bytes(password)
            matched = self._verify(user.password_hash if user else self._dummy_hash, secret)
            if user is None or not matched:
                self.throttle.failed(keys)
                return AccountResult(False, reason="bad_credentials")
        finally:
            self.throttle.end(keys)

        # Only the account is cleared: a client that owns one account must not
        # be able to wipe its failures against others by logging in to it.
        self.throttle.succeeded(f"user:{key}")
        if self.hasher.check_needs_rehash(user.password_hash):
            self.store.update_password_hash(user.id, self.hasher.hash(secret))
        return AccountResult(True, user=user.username)

    def _verify(self, password_hash: str, secret: bytes) -> bool:
        try:
            return self.hasher.verify(password_hash, secret)
        except VerifyMismatchError:
            return False
