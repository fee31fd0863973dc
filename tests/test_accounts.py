"""Accounts through a real SQLite store: rules, registration, login, throttling, rehashing."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
import unicodedata

import argon2
import pytest

from chatbot.accounts import (
    AccountResult,
    Accounts,
    PasswordPolicy,
    Throttle,
    ThrottlePolicy,
    username_key,
)
from chatbot.storage import Store

# Cheap parameters keep the tests fast; one test uses the real default.
CHEAP = dict(time_cost=1, memory_cost=8, parallelism=1)
NO_THROTTLE = ThrottlePolicy(delay_after=10_000, lock_after=10_000)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "accounts.db"


@pytest.fixture
def store(db_path):
    store = Store(f"sqlite:///{db_path}")
    store.open()
    yield store
    store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def accounts(store, clock) -> Accounts:
    return Accounts(store, clock=clock, hasher=argon2.PasswordHasher(**CHEAP))


@pytest.mark.parametrize(
    "username, problem",
    [
        ("bob", None),
        ("Иван_Петров", None),
        ("李小龙", None),
        ("user_1.a-b", None),
        ("Jose\u0301", None),  # a combining accent after a letter
        ("ｂｏｂ", None),  # fullwidth letters are letters
        ("١٢٣", None),  # Arabic-Indic digits
        ("a" * 32, None),
        ("ab", "too_short"),
        ("", "too_short"),
        ("ﬀ", "too_short"),  # one ligature is two letters after NFKC, still short
        ("a" * 33, "too_long"),
        ("bob smith", "bad_characters"),
        ("bob!", "bad_characters"),
        ("bob\n", "bad_characters"),
        ("bob\u200b", "bad_characters"),  # zero-width space
        ("😀bob", "bad_characters"),
        ("\u0301bob", "bad_characters"),  # a combining mark cannot start a name
        ("\ud800ab", "bad_characters"),  # a lone surrogate
        ("\u3164\u3164\u3164", "bad_characters"),  # Hangul fillers: letters that show as nothing
        ("ann\u3164", "bad_characters"),
        ("ann\uffa0", "bad_characters"),  # the half-width filler
        ("ann\u034f", "bad_characters"),  # a combining grapheme joiner
        ("ann\ufe0f", "bad_characters"),  # a variation selector
        ("...", "bad_characters"),  # punctuation alone names no one
        ("-_-", "bad_characters"),
        ("._1", None),
    ],
)
def test_username_rules(accounts, username, problem):
    assert accounts.validate_username(username) == problem


@pytest.mark.parametrize(
    "password, username, problem",
    [
        ("password", None, None),
        ("correct horse battery", None, None),
        ("пароль123", None, None),
        ("пароль", None, "too_short"),
        ("😀" * 8, None, None),  # one emoji, one character
        ("😀" * 7, None, "too_short"),
        ("ﬀ" * 4, None, None),  # counted after NFKC: eight characters
        ("1234567", None, "too_short"),
        ("a" * 128, None, None),
        ("a" * 129, None, "too_long"),
        (" " * 10, None, "only_whitespace"),
        ("\t\n  \u3000    ", None, "only_whitespace"),
        ("\u200b" * 8, None, "only_whitespace"),  # zero-width spaces: nothing to see or retype
        ("\u200b \u200d\u2060\ufeff \u200e\x7f\u3164\ufe0f", None, "only_whitespace"),
        ("a" + "\u200b" * 7, None, None),
        ("\ud800" * 8, None, "bad_characters"),
        ("Alice123", "alice123", "same_as_username"),
        ("ＡＬＩＣＥ１２３", "alice123", "same_as_username"),
        ("alice1234", "alice123", None),
    ],
)
def test_password_policy(accounts, password, username, problem):
    assert accounts.validate_password(password, username=username) == problem


def test_password_policy_bounds_are_settable(store):
    accounts = Accounts(store, hasher=argon2.PasswordHasher(**CHEAP), policy=PasswordPolicy(min_length=12, max_length=20))
    assert accounts.validate_password("elevenchars") == "too_short"
    assert accounts.validate_password("twelve chars") is None
    assert accounts.validate_password("x" * 21) == "too_long"


def test_register_then_log_in_with_any_case(accounts):
    assert accounts.register("Alice", "пароль 🙂 secret") == AccountResult(True, user="Alice")
    assert accounts.authenticate("alice", "пароль 🙂 secret") == AccountResult(True, user="Alice")
    assert accounts.authenticate("ＡＬＩＣＥ", "пароль 🙂 secret") == AccountResult(True, user="Alice")
    assert accounts.authenticate("Alice", "пароль 🙂 secreT") == AccountResult(False, reason="bad_credentials")


def test_names_and_passwords_match_in_any_unicode_form(accounts):
    composed = unicodedata.normalize("NFC", "café crème brûlée")
    assert accounts.register("Jose\u0301", composed) == AccountResult(True, user="Jos\u00e9")  # stored in NFC
    assert accounts.authenticate("JOS\u00c9", unicodedata.normalize("NFD", composed)) == AccountResult(
        True, user="Jos\u00e9")


def test_registration_refusals(accounts):
    assert accounts.register("Alice", "long enough").ok
    assert accounts.register("ALICE", "another one") == AccountResult(False, reason="taken")
    assert accounts.register("al", "long enough") == AccountResult(False, reason="invalid_username", detail="too_short")
    assert accounts.register("bob", "short") == AccountResult(False, reason="weak_password", detail="too_short")
    assert accounts.register("bob", "BOB") == AccountResult(False, reason="weak_password", detail="too_short")
    assert accounts.register("bobby123", "Bobby123") == AccountResult(
        False, reason="weak_password", detail="same_as_username")


def test_a_registration_run_again_on_its_connection_answers_as_it_did(accounts, monkeypatch):
    # A turn run again after another server's turn of the session came first finds the account
    # it made a moment ago.
    made = accounts.register("Alice", "long enough", client_key="conn:k1")
    assert made == AccountResult(True, user="Alice")
    assert accounts.register("ALICE", "long enough", client_key="conn:k1") == made
    assert accounts.register("alice", "not the one", client_key="conn:k1") == AccountResult(False, reason="taken")
    # Someone else who chose the same name, and the same common password, is not let in.
    assert accounts.register("alice", "long enough", client_key="conn:k2") == AccountResult(False, reason="taken")
    assert accounts.register("alice", "long enough") == AccountResult(False, reason="taken")
    monkeypatch.setattr("chatbot.accounts.REGISTRATION_RETRY", -1)  # long after it was made
    assert accounts.register("alice", "long enough", client_key="conn:k1") == AccountResult(False, reason="taken")


def test_username_available(accounts):
    assert accounts.username_available("Alice")
    accounts.register("Alice", "long enough")
    assert not accounts.username_available("alice")
    assert not accounts.username_available("a b")  # cannot be registered at all
    assert accounts.username_available("alice2")


def test_only_an_argon2id_hash_is_stored(accounts, store, db_path):
    password = "my very own secret"
    accounts.register("Alice", password)
    store.flush()
    stored = store.find_user(username_key("alice")).password_hash
    assert stored.startswith("$argon2id$")
    everything = b"".join(path.read_bytes() for path in db_path.parent.glob("accounts.db*"))
    assert password.encode() not in everything
    assert stored.encode() in everything


def test_unknown_user_gets_the_wrong_password_answer(store):
    accounts = Accounts(store, hasher=argon2.PasswordHasher(**CHEAP), throttle=Throttle(NO_THROTTLE))
    accounts.register("Alice", "long enough")
    assert accounts.authenticate("nobody", "long enough") == accounts.authenticate("Alice", "wrong password")
    assert accounts.authenticate("a b!", "whatever") == AccountResult(False, reason="bad_credentials")
    assert accounts.authenticate("\ud800ab", "\ud800" * 9) == AccountResult(False, reason="bad_credentials")


def test_unknown_user_takes_about_as_long_as_a_wrong_password(store):
    # Costly enough that the hash, not the query, is what is measured.
    hasher = argon2.PasswordHasher(time_cost=2, memory_cost=8 * 1024, parallelism=1)
    accounts = Accounts(store, hasher=hasher, throttle=Throttle(NO_THROTTLE))
    accounts.register("Alice", "long enough")

    def seconds(username: str) -> float:
        started = time.perf_counter()
        accounts.authenticate(username, "wrong password")
        return time.perf_counter() - started

    seconds("Alice"), seconds("nobody")  # warm up
    wrong, unknown = [], []
    for _ in range(7):
        wrong.append(seconds("Alice"))
        unknown.append(seconds("nobody"))
    wrong_median, unknown_median = statistics.median(wrong), statistics.median(unknown)
    assert wrong_median >= unknown_median / 2 and unknown_median >= wrong_median / 2, (wrong, unknown)


def test_failures_delay_then_lock_the_account_until_the_cool_down(accounts, clock):
    accounts.register("Alice", "long enough")
    waits = []
    for attempt in range(10):
        result = accounts.authenticate("alice", "wrong password", client_key=f"conn-{attempt}")
        assert result == AccountResult(False, reason="bad_credentials")
        waits.append(accounts.throttle.retry_after(["user:alice"]))
        if attempt < 9:
            clock.advance(waits[-1])
    assert waits == [0, 0, 1, 2, 4, 8, 16, 32, 60, 900]

    # Locked: even the right password is refused without being checked.
    locked = accounts.authenticate("Alice", "long enough", client_key="elsewhere")
    assert locked == AccountResult(False, reason="throttled", retry_after=900)
    clock.advance(899)
    assert accounts.authenticate("Alice", "long enough", client_key="elsewhere").reason == "throttled"
    clock.advance(1)
    assert accounts.authenticate("Alice", "long enough", client_key="elsewhere") == AccountResult(True, user="Alice")

    # The success cleared the account: one more mistake costs nothing.
    assert accounts.authenticate("Alice", "oops", client_key="elsewhere").reason == "bad_credentials"
    assert accounts.throttle.retry_after(["user:alice"]) == 0


def test_a_client_guessing_many_accounts_is_throttled(accounts, clock):
    for name in ("user1", "user2", "user3"):
        accounts.authenticate(name, "guess", client_key="10.0.0.9")
    result = accounts.authenticate("user4", "guess", client_key="10.0.0.9")
    assert result == AccountResult(False, reason="throttled", retry_after=1)
    assert accounts.authenticate("user4", "guess", client_key="10.0.0.10").reason == "bad_credentials"
    clock.advance(1)
    assert accounts.authenticate("user4", "guess", client_key="10.0.0.9").reason == "bad_credentials"


def test_guesses_made_at_once_on_several_threads_are_throttled_as_if_one_after_another(store, clock):
    checked = []

    class SlowHasher(argon2.PasswordHasher):
        def verify(self, hash, password):  # as long as a real check, so the attempts overlap
            checked.append(password)
            time.sleep(0.02)
            return super().verify(hash, password)

    accounts = Accounts(store, clock=clock, hasher=SlowHasher(**CHEAP))
    accounts.register("Alice", "long enough")
    with ThreadPoolExecutor(4) as threads:  # as the server's blocking threads
        results = list(threads.map(lambda n: accounts.authenticate("alice", f"guess {n}", client_key=f"c{n}"),
                                   range(40)))
    assert len(checked) == ThrottlePolicy().delay_after, "the clock did not move: no block ran out"
    assert sum(result.reason == "bad_credentials" for result in results) == len(checked)
    assert {result.reason for result in results} == {"bad_credentials", "throttled"}
    # The account and the clients whose guesses were checked; refused ones leave nothing behind.
    assert accounts.throttle.tracked_keys == 1 + len(checked)


def test_throttle_forgets_old_failures_and_stays_bounded(clock):
    throttle = Throttle(ThrottlePolicy(forget_after=3600, max_keys=5), clock=clock)
    for _ in range(3):
        throttle.failed(["user:alice"])
    assert throttle.retry_after(["user:alice"]) == 1
    clock.advance(3601)
    throttle.failed(["user:alice"])
    assert throttle.retry_after(["user:alice"]) == 0  # counted afresh: one failure
    for n in range(20):
        throttle.failed([f"client:{n}"])
    assert throttle.tracked_keys == 5


def test_failures_under_throwaway_names_do_not_push_a_lock_out_of_a_full_table(clock):
    throttle = Throttle(ThrottlePolicy(max_keys=10), clock=clock)
    for _ in range(ThrottlePolicy().lock_after):
        throttle.failed(["user:ann"])
    locked = throttle.retry_after(["user:ann"])
    assert locked > 60
    for n in range(500):
        throttle.failed([f"user:throwaway{n}", f"client:{n}"])
    assert throttle.tracked_keys == 10
    assert throttle.retry_after(["user:ann"]) == locked


def test_failures_under_throwaway_names_do_not_wipe_a_count_on_its_way_to_the_lock(clock):
    policy = ThrottlePolicy(max_keys=10)
    throttle = Throttle(policy, clock=clock)
    for _ in range(policy.lock_after - 1):
        throttle.failed(["user:ann"])
    clock.advance(policy.max_delay + 1)  # the delay ran out, the count did not
    assert throttle.retry_after(["user:ann"]) == 0
    for n in range(500):
        throttle.failed([f"user:throwaway{n}"])
    throttle.failed(["user:ann"])
    assert throttle.retry_after(["user:ann"]) == policy.lock_seconds, "the next failure still locks"


def test_locks_placed_in_front_of_a_victims_lock_do_not_expose_it_to_a_flood(clock):
    policy = ThrottlePolicy(max_keys=200)
    throttle = Throttle(policy, clock=clock)
    for key in ["user:victim"] + [f"conn:{n}" for n in range(80)]:  # an attacker's own locks, after it
        for _ in range(policy.lock_after):
            throttle.failed([key])
    for n in range(500):
        throttle.failed([f"user:throwaway{n}"])
    assert throttle.retry_after(["user:victim"]) == policy.lock_seconds


def test_login_rehashes_when_the_parameters_changed(store):
    old = Accounts(store, hasher=argon2.PasswordHasher(**CHEAP))
    old.register("Alice", "long enough")
    old_hash = store.find_user("alice").password_hash

    stronger = argon2.PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    new = Accounts(store, hasher=stronger)
    assert new.authenticate("alice", "wrong password").reason == "bad_credentials"
    assert store.find_user("alice").password_hash == old_hash  # a failure changes nothing
    assert new.authenticate("alice", "long enough").ok
    new_hash = store.find_user("alice").password_hash
    assert new_hash != old_hash and not stronger.check_needs_rehash(new_hash)
    assert new.authenticate("alice", "long enough").ok
    assert store.find_user("alice").password_hash == new_hash  # no rehash when current


def test_default_hasher_uses_the_owasp_parameters(store):
    accounts = Accounts(store)
    assert accounts.register("Alice", "long enough").ok
    assert "$argon2id$v=19$m=19456,t=2,p=1$" in store.find_user("alice").password_hash
    assert accounts.authenticate("alice", "long enough") == AccountResult(True, user="Alice")
