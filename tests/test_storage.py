"""The store against real databases: the same tests on SQLite and PostgreSQL.

PostgreSQL comes from the ``postgres_url`` fixture (127.0.0.1:5432, database
``test``, a schema per test, dropped afterwards); without a server those runs
are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, ContextManager
from urllib.parse import parse_qs, quote, urlparse

import peewee
import pytest

from chatbot.errors import ConfigError, StorageError
from chatbot.storage import (
    LATEST_VERSION,
    HistoryRecord,
    SessionRecord,
    SessionConflict,
    Store,
    TurnWrite,
    UsernameTaken,
    migrate,
    open_database,
)
from chatbot.storage.models import bind_models
from tests.conftest import POSTGRES_DSN

REPO = Path(__file__).resolve().parents[1]
NOW = 1_700_000_000.0


@dataclass
class Backend:
    name: str
    url: str
    hold_write_lock: Callable[[], ContextManager[None]]  # blocks the store's writes while held


def _sqlite_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "db" / "chatbot.db"

    @contextlib.contextmanager
    def hold_write_lock():
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("COMMIT")
            conn.close()

    return Backend("sqlite", f"sqlite:///{path}", hold_write_lock)


def _postgresql_backend(url: str) -> Backend:
    import psycopg2

    options = parse_qs(urlparse(url).query)["options"][0]  # the test's own search_path

    @contextlib.contextmanager
    def hold_write_lock():
        conn = psycopg2.connect(POSTGRES_DSN, options=options)
        conn.cursor().execute("LOCK TABLE sessions IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.commit()
            conn.close()

    return Backend("postgresql", url, hold_write_lock)


@pytest.fixture
def backend(request, tmp_path):
    if request.param == "sqlite":
        return _sqlite_backend(tmp_path)
    return _postgresql_backend(request.getfixturevalue("postgres_url"))


@pytest.fixture
def open_store(backend):
    """Open stores on the backend (with Store's keyword arguments); all closed at teardown."""
    stores = []

    def open_(**kwargs) -> Store:
        store = Store(backend.url, **kwargs)
        store.open()
        stores.append(store)
        return store

    yield open_
    for store in stores:
        store.close()


@pytest.fixture
def store(open_store) -> Store:
    return open_store()


def session(session_id: str = "s1", *, token_hash: str | None = None, user: str | None = None,
            created_at: float = NOW, updated_at: float | None = None) -> SessionRecord:
    return SessionRecord(
        id=session_id, token_hash=token_hash or f"token-{session_id}", flow="main", state="main:start",
        slots={}, lang="en", user=user, flow_version="1", seq=0, created_at=created_at,
        updated_at=created_at if updated_at is None else updated_at,
    )


def entry(seq: int, role: str = "user", text: str | None = None, **meta) -> HistoryRecord:
    return HistoryRecord(seq=seq, role=role, text=f"message {seq}" if text is None else text, meta=meta,
                         created_at=NOW + seq)


def turn(session_id: str, seq: int, *entries: HistoryRecord, client_id: str | None = None,
         user: str | None = None, token_hash: str | None = None, state: str = "main:ask") -> TurnWrite:
    replies = [e.seq for e in entries if e.role == "bot"]
    return TurnWrite(
        session_id=session_id, flow="main", state=state, slots={"turn": seq}, lang="en", user=user,
        flow_version="1", seq=seq, updated_at=NOW + seq, token_hash=token_hash, entries=entries,
        client_id=client_id, reply_seq_range=(min(replies), max(replies)) if client_id else None,
    )


def seqs(records) -> list[int]:
    return [record.seq for record in records]


def resolve_all(futures: list[Future], timeout: float = 30) -> list:
    return [future.result(timeout) for future in futures]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
class TestStore:
    def test_created_session_loads_back_equal(self, store):
        rec = session()
        rec = SessionRecord(**{**rec.__dict__, "slots": {"name": "Иван 🙂", "items": [1, 2], "deep": {"a": None}}})
        assert store.create_session(rec).result() is None
        assert store.load_session("s1") == rec
        assert store.load_session("missing") is None
        assert store.count_sessions() == 1

    def test_turn_updates_session_and_appends_history(self, store):
        store.create_session(session()).result()
        store.create_user("Zoë", "zoë", "hash")
        store.save_turn(turn("s1", 2, entry(1, text="привет"), entry(2, "bot", buttons=["yes", "no"]),
                             client_id="c1", user="Zoë", state="login:ask_password")).result()
        loaded = store.load_session("s1")
        assert (loaded.state, loaded.slots, loaded.user, loaded.seq, loaded.updated_at) == (
            "login:ask_password", {"turn": 2}, "Zoë", 2, NOW + 2)
        assert loaded.created_at == NOW
        assert store.history("s1") == [entry(1, text="привет"), entry(2, "bot", buttons=["yes", "no"])]

    def test_history_pages_forward_and_back(self, store):
        store.create_session(session()).result()
        resolve_all([store.save_turn(turn("s1", n, entry(n))) for n in range(1, 11)])
        assert seqs(store.history("s1")) == list(range(1, 11))
        assert seqs(store.history("s1", after_seq=7)) == [8, 9, 10]
        assert seqs(store.history("s1", after_seq=2, limit=3)) == [3, 4, 5]
        assert seqs(store.history("s1", before_seq=9, limit=3)) == [6, 7, 8]
        assert seqs(store.history("s1", after_seq=4, before_seq=7)) == [5, 6]
        assert store.history("other") == []

    def test_a_turn_ending_the_conversation_deletes_what_came_before_and_says_where_the_next_starts(self, store):
        store.create_session(session()).result()
        store.save_turn(turn("s1", 2, entry(1), entry(2, "bot"))).result()
        assert store.load_session("s1").conversation_from == 0
        goodbye = turn("s1", 4, entry(3), entry(4, "bot"))
        store.save_turn(dataclasses.replace(goodbye, forget_before=4)).result()
        assert (seqs(store.history("s1")), store.load_session("s1").conversation_from) == ([4], 4)
        store.save_turn(turn("s1", 6, entry(5), entry(6, "bot"))).result()  # the next turn keeps it
        assert (seqs(store.history("s1")), store.load_session("s1").conversation_from) == ([4, 5, 6], 4)

    def test_history_is_trimmed_to_the_limit(self, open_store):
        store = open_store(history_limit=5, trim_every=1)
        store.create_session(session()).result()
        store.create_session(session("s2")).result()
        resolve_all([store.save_turn(turn("s1", 2 * n, entry(2 * n - 1), entry(2 * n, "bot"))) for n in range(1, 5)])
        store.save_turn(turn("s2", 1, entry(1))).result()
        assert seqs(store.history("s1")) == [4, 5, 6, 7, 8]
        assert seqs(store.history("s2")) == [1]  # other sessions keep theirs

    def test_trimming_runs_when_the_seq_passes_a_multiple_of_trim_every(self, open_store):
        store = open_store(history_limit=4, trim_every=10)
        store.create_session(session()).result()
        for n in range(1, 5):  # seqs 2, 4, 6, 8: no multiple of 10 passed, nothing trimmed yet
            store.save_turn(turn("s1", 2 * n, entry(2 * n - 1), entry(2 * n, "bot"))).result()
        assert seqs(store.history("s1")) == list(range(1, 9))
        store.save_turn(turn("s1", 10, entry(9), entry(10, "bot"))).result()
        assert seqs(store.history("s1")) == [7, 8, 9, 10]

    def test_processed_ids_give_the_reply_range_and_are_trimmed(self, open_store):
        store = open_store(processed_limit=3, trim_every=1)
        store.create_session(session()).result()
        for n in range(1, 6):
            store.save_turn(turn("s1", 3 * n, entry(3 * n - 2), entry(3 * n - 1, "bot"), entry(3 * n, "bot"),
                                 client_id=f"c{n}")).result()
        assert store.processed("s1", "c5") == (14, 15)
        assert store.processed("s1", "c3") == (8, 9)
        assert store.processed("s1", "c2") is None  # beyond processed_limit
        assert store.processed("s1", "never") is None

    def test_repeated_client_id_fails_that_turn_whole(self, store):
        store.create_session(session()).result()
        store.save_turn(turn("s1", 2, entry(1), entry(2, "bot"), client_id="c1")).result()
        with pytest.raises(SessionConflict, match=r"^storage: message 'c1' of session 's1' was already processed$"):
            store.save_turn(turn("s1", 4, entry(3), entry(4, "bot"), client_id="c1", state="main:other")).result()
        assert store.load_session("s1").state == "main:ask"  # nothing of the failed turn remains
        assert seqs(store.history("s1")) == [1, 2]

    def test_a_turn_from_a_stale_seq_conflicts(self, store):
        store.create_session(session()).result()
        store.save_turn(replace(turn("s1", 2, entry(1), entry(2, "bot")), expected_seq=0)).result()
        stale = replace(turn("s1", 4, entry(3), entry(4, "bot"), state="main:other"), expected_seq=0)
        with pytest.raises(SessionConflict, match=r"^storage: session 's1' is no longer at seq 0$"):
            store.save_turn(stale).result()
        assert store.load_session("s1").state == "main:ask"
        assert seqs(store.history("s1")) == [1, 2]
        store.save_turn(replace(stale, expected_seq=2)).result()
        assert store.load_session("s1").state == "main:other"
        with pytest.raises(StorageError, match=r"^storage: unknown session 'ghost'$"):
            store.save_turn(replace(turn("ghost", 1, entry(1)), expected_seq=0)).result()

    def test_session_is_found_by_token_until_the_token_rotates(self, store):
        store.create_session(session(token_hash="a" * 64)).result()
        assert store.find_session_by_token("a" * 64).id == "s1"
        store.save_turn(turn("s1", 1, entry(1), token_hash="b" * 64)).result()
        assert store.find_session_by_token("a" * 64) is None
        assert store.find_session_by_token("b" * 64).id == "s1"
        store.save_turn(turn("s1", 2, entry(2))).result()  # no rotation keeps the token
        assert store.load_session("s1").token_hash == "b" * 64

    def test_usernames_are_unique_by_key(self, store):
        bob = store.create_user("Bob", "bob", "hash-1")
        assert store.find_user("bob") == bob
        with pytest.raises(UsernameTaken, match=r"^storage: username 'BOB' is taken$"):
            store.create_user("BOB", "bob", "hash-2")
        assert store.find_user("bob").username == "Bob"
        assert store.find_user("alice") is None
        store.update_password_hash(bob.id, "hash-3")
        assert store.find_user("bob").password_hash == "hash-3"
        with pytest.raises(StorageError, match=r"^storage: unknown user id 9999$"):
            store.update_password_hash(9999, "hash")

    def test_turn_of_unknown_session_or_user_fails(self, store):
        with pytest.raises(StorageError, match=r"^storage: unknown session 'ghost'$"):
            store.save_turn(turn("ghost", 1, entry(1))).result()
        store.create_session(session()).result()
        with pytest.raises(StorageError, match=r"^storage: unknown user 'nobody'$"):
            store.save_turn(turn("s1", 1, entry(1), user="nobody")).result()
        assert store.history("s1") == []

    def test_expired_sessions_go_with_their_history(self, store):
        store.create_session(session("fresh", created_at=NOW - 60)).result()
        store.create_session(session("idle", created_at=NOW - 3600, updated_at=NOW - 3000)).result()
        store.create_session(session("old", created_at=NOW - 90_000, updated_at=NOW - 10)).result()
        store.save_turn(turn("old", 1, entry(1), client_id=None)).result()  # updated_at NOW + 1
        assert store.delete_expired(idle_before=NOW - 1800, created_before=NOW - 86_400) == 2
        assert store.load_session("fresh") is not None
        assert store.load_session("idle") is None and store.load_session("old") is None
        assert store.history("old") == []
        assert store.count_sessions() == 1
        assert store.delete_expired(idle_before=NOW - 1800, created_before=NOW - 86_400) == 0

    def test_many_expired_sessions_go_a_few_per_transaction(self, store, monkeypatch):
        import chatbot.storage.store as store_module

        monkeypatch.setattr(store_module, "EXPIRY_CHUNK", 7)
        resolve_all([store.create_session(session(f"idle{n}", created_at=NOW - 3600)) for n in range(30)])
        store.create_session(session("fresh", created_at=NOW - 60)).result()
        before = store.write_stats.transactions
        assert store.delete_expired(idle_before=NOW - 1800, created_before=NOW - 86_400) == 30
        assert store.write_stats.transactions - before == 5  # 7 + 7 + 7 + 7 + 2
        assert store.count_sessions() == 1 and store.load_session("fresh") is not None

    def test_queued_writes_share_one_transaction(self, backend, store):
        resolve_all([store.create_session(session(f"s{n}")) for n in range(40)])
        before = store.write_stats
        with backend.hold_write_lock():
            futures = [store.save_turn(turn(f"s{n}", 1, entry(1))) for n in range(40)]
            time.sleep(0.2)  # the writer is stuck on the lock with whatever it took first
            assert not any(future.done() for future in futures)
        resolve_all(futures)
        after = store.write_stats
        assert after.writes - before.writes == 40
        assert after.transactions - before.transactions <= 2
        assert all(seqs(store.history(f"s{n}")) == [1] for n in range(40))

    def test_a_failing_write_does_not_fail_its_neighbours(self, backend, store):
        resolve_all([store.create_session(session(f"s{n}")) for n in range(10)])
        with backend.hold_write_lock():
            good = [store.save_turn(turn(f"s{n}", 1, entry(1))) for n in range(5)]
            bad = store.save_turn(turn("ghost", 1, entry(1)))
            good += [store.save_turn(turn(f"s{n}", 1, entry(1))) for n in range(5, 10)]
        with pytest.raises(StorageError, match="unknown session 'ghost'"):
            bad.result(30)
        resolve_all(good)
        assert all(seqs(store.history(f"s{n}")) == [1] for n in range(10))
        assert store.write_stats.failures == 1
        store.save_turn(turn("s0", 2, entry(2))).result(30)  # the writer lives on

    def test_turns_of_one_batch_land_in_order_and_the_bad_ones_fail_alone(self, backend, open_store, monkeypatch):
        store = open_store(history_limit=4, processed_limit=2, trim_every=2)
        together = []  # SQLite runs the statements of a batch's turns together, and alone after a failure
        apply_turns = store._apply_turns
        monkeypatch.setattr(store, "_apply_turns", lambda turns: together.append(len(turns)) or apply_turns(turns))
        store.create_user("ann", "ann", "hash")
        resolve_all([store.create_session(session(f"s{n}")) for n in range(4)])
        store.save_turn(turn("s3", 2, entry(1), entry(2, "bot"), client_id="c1")).result()
        with backend.hold_write_lock():  # everything below queues up and is taken as one batch
            futures = {
                # s0: three turns in a row, checked against the seq each expects, one rotating the token
                "s0 first": store.save_turn(replace(turn("s0", 2, entry(1), entry(2, "bot"), client_id="a"),
                                                    expected_seq=0)),
                "s0 second": store.save_turn(replace(turn("s0", 4, entry(3), entry(4, "bot"), client_id="b",
                                                          user="ann", token_hash="t" * 64), expected_seq=2)),
                "s0 third": store.save_turn(replace(turn("s0", 6, entry(5), entry(6, "bot"), client_id="c",
                                                         user="ann", state="main:third"), expected_seq=4)),
                "s1 stale": store.save_turn(replace(turn("s1", 2, entry(1)), expected_seq=7)),
                "s2 plain": store.save_turn(turn("s2", 1, entry(1))),
                "s3 repeated id": store.save_turn(turn("s3", 4, entry(3), entry(4, "bot"), client_id="c1")),
                "ghost": store.save_turn(turn("ghost", 1, entry(1))),
            }
        errors = {}
        for name, future in futures.items():
            try:
                future.result(30)
            except StorageError as error:
                errors[name] = str(error)
        assert errors == {
            "s1 stale": "storage: session 's1' is no longer at seq 7",
            "s3 repeated id": "storage: message 'c1' of session 's3' was already processed",
            "ghost": "storage: unknown session 'ghost'",
        }
        s0 = store.load_session("s0")
        assert (s0.seq, s0.state, s0.user, s0.token_hash) == (6, "main:third", "ann", "t" * 64)
        assert seqs(store.history("s0")) == [3, 4, 5, 6]  # trimmed to the limit
        assert store.processed("s0", "c") == (6, 6) and store.processed("s0", "a") is None
        assert (store.load_session("s1").seq, store.history("s1")) == (0, [])
        assert seqs(store.history("s2")) == [1]
        assert (store.load_session("s3").seq, seqs(store.history("s3"))) == (2, [1, 2])
        # (the writer may have taken the first turn alone, before the others were queued)
        assert together in ([[7], [6]] if backend.name == "sqlite" else [[]])

    def test_turns_of_one_batch_that_all_succeed_land_together(self, backend, open_store, monkeypatch):
        store = open_store(history_limit=4, processed_limit=2, trim_every=2)
        together = []
        apply_turns = store._apply_turns
        monkeypatch.setattr(store, "_apply_turns", lambda turns: together.append(len(turns)) or apply_turns(turns))
        store.create_user("ann", "ann", "hash")
        resolve_all([store.create_session(session(f"s{n}")) for n in range(3)])
        with backend.hold_write_lock():
            futures = [
                store.save_turn(replace(turn("s0", 2, entry(1), entry(2, "bot"), client_id="a"), expected_seq=0)),
                store.save_turn(replace(turn("s0", 4, entry(3), entry(4, "bot"), client_id="b", user="ann",
                                             token_hash="t" * 64), expected_seq=2)),
                store.save_turn(replace(turn("s0", 6, entry(5), entry(6, "bot"), client_id="c", user="ann",
                                             state="main:third"), expected_seq=4)),
                store.save_turn(turn("s1", 1, entry(1))),
                store.save_turn(turn("s2", 2, entry(1), entry(2, "bot"), client_id="z", user="ann")),
            ]
        assert resolve_all(futures) == [None] * 5
        if backend.name == "sqlite":  # (the writer may have taken the first turn alone)
            assert together in ([5], [4])
        else:
            assert together == []
        s0 = store.load_session("s0")
        assert (s0.seq, s0.state, s0.user, s0.token_hash) == (6, "main:third", "ann", "t" * 64)
        assert seqs(store.history("s0")) == [3, 4, 5, 6]  # trimmed to the limit
        assert store.processed("s0", "c") == (6, 6) and store.processed("s0", "b") == (4, 4)
        assert store.processed("s0", "a") is None  # beyond processed_limit
        assert seqs(store.history("s1")) == [1] and store.load_session("s1").state == "main:ask"
        assert store.load_session("s2").user == "ann" and store.processed("s2", "z") == (2, 2)
        assert store.write_stats.failures == 0

    def test_concurrent_turns_all_land_while_readers_read(self, store):
        sessions, turns = 8, 25
        resolve_all([store.create_session(session(f"s{n}")) for n in range(sessions)])
        futures: list[Future] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def write(n: int) -> None:
            for t in range(1, turns + 1):
                futures.append(store.save_turn(turn(f"s{n}", t, entry(t))))

        def read() -> None:
            try:
                while not stop.is_set():
                    for n in range(sessions):
                        store.load_session(f"s{n}")
                        store.history(f"s{n}", limit=5)
            except BaseException as error:  # reported by the assertion below
                errors.append(error)

        before = store.write_stats
        readers = [threading.Thread(target=read) for _ in range(2)]
        writers = [threading.Thread(target=write, args=(n,)) for n in range(sessions)]
        for thread in readers + writers:
            thread.start()
        for thread in writers:
            thread.join()
        resolve_all(futures)
        stop.set()
        for thread in readers:
            thread.join()
        assert errors == []
        after = store.write_stats
        assert after.writes - before.writes == sessions * turns
        assert after.transactions - before.transactions < sessions * turns
        for n in range(sessions):
            assert seqs(store.history(f"s{n}")) == list(range(1, turns + 1))
            assert store.load_session(f"s{n}").seq == turns

    def test_flush_waits_for_every_queued_write(self, store):
        store.create_session(session())
        futures = [store.save_turn(turn("s1", n, entry(n))) for n in range(1, 21)]
        store.flush(timeout=30)
        assert all(future.done() for future in futures)

    def test_writes_survive_close_and_reopen(self, backend, store):
        store.create_session(session())
        store.create_user("Ann", "ann", "hash")
        store.save_turn(turn("s1", 2, entry(1), entry(2, "bot"), client_id="c1", user="Ann"))
        store.close()  # without waiting: close applies what is queued
        reopened = Store(backend.url)
        reopened.open()
        try:
            assert reopened.load_session("s1").user == "Ann"
            assert seqs(reopened.history("s1")) == [1, 2]
            assert reopened.processed("s1", "c1") == (2, 2)
        finally:
            reopened.close()

    def test_closed_store_refuses_work(self, store):
        store.close()
        with pytest.raises(StorageError, match=r"^storage: the store is not open$"):
            store.save_turn(turn("s1", 1, entry(1)))
        with pytest.raises(StorageError, match=r"^storage: the store is not open$"):
            store.load_session("s1")
        store.close()  # closing twice is harmless

    def test_every_acknowledged_write_survives_sigkill(self, backend):
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASH_WRITER, backend.url],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        acknowledged = []
        try:
            for line in proc.stdout:
                acknowledged.append(int(line))
                if len(acknowledged) == 300:
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            rest, errors = proc.communicate(timeout=30)
        acknowledged += [int(line) for line in rest.split()]
        assert len(acknowledged) >= 300, errors
        assert proc.returncode == -signal.SIGKILL
        store = Store(backend.url, history_limit=1_000_000)
        store.open()
        try:
            stored = set(seqs(store.history("crash", limit=1_000_000)))
            assert set(acknowledged) <= stored
            assert store.load_session("crash").seq >= max(acknowledged)
        finally:
            store.close()

    def test_a_version_1_database_is_migrated(self, backend):
        database = open_database(backend.url)
        models = bind_models(database)
        assert migrate(database, models, target=1) == 1
        first = bind_models(database)  # the models as version 1 had them
        first.Session._meta.remove_field("conversation_from")
        with database.connection_context():
            assert ("updated_at",) not in index_columns(database, "sessions")
            assert "conversation_from" not in {column.name for column in database.get_columns("sessions")}
            first.Session.insert(
                id="old", token_hash="t", flow="main", state="main:start", slots={"kept": True}, lang="en",
                flow_version="1", seq=0, created_at=NOW, updated_at=NOW,
            ).execute()
        database.close_all()

        store = Store(backend.url)
        store.open()
        try:
            old = store.load_session("old")
            assert (old.slots, old.conversation_from) == ({"kept": True}, 0)
        finally:
            store.close()
        with database.connection_context():
            assert schema_version(database) == LATEST_VERSION == 3
            assert {("updated_at",), ("created_at",)} <= index_columns(database, "sessions")
            assert ("username",) in index_columns(database, "users")
        assert migrate(database, models) == 3  # nothing left to do
        database.close_all()

    def test_a_server_not_yet_upgraded_still_creates_sessions(self, backend, store):
        # A rolling upgrade: the first new server migrated, the old ones insert without the new column.
        database = open_database(backend.url)
        old = bind_models(database)
        old.Session._meta.remove_field("conversation_from")
        with database.connection_context():
            old.Session.insert(id="from-old", token_hash="t-old", flow="main", state="main:start", slots={},
                               lang="en", flow_version="1", seq=0, created_at=NOW, updated_at=NOW).execute()
        database.close_all()
        assert store.load_session("from-old").conversation_from == 0

    def test_tables_match_the_models(self, backend, store):
        database = open_database(backend.url)
        with database.connection_context():
            for model in bind_models(database):
                columns = {column.name for column in database.get_columns(model._meta.table_name)}
                assert columns == {field.column_name for field in model._meta.sorted_fields}, model.__name__
        database.close_all()

    def test_a_newer_schema_is_refused(self, backend, store):
        store.close()
        database = open_database(backend.url)
        with database.connection_context():
            database.execute_sql("UPDATE schema_version SET version = 99")
        database.close_all()
        with pytest.raises(StorageError, match=r"^storage: the database schema is at version 99, "
                                               r"newer than this program knows \(3\)$"):
            Store(backend.url).open()


CRASH_WRITER = """
import sys, time
from collections import deque
from chatbot.storage import HistoryRecord, SessionRecord, Store, TurnWrite

store = Store(sys.argv[1], history_limit=1_000_000)
store.open()
now = time.time()
store.create_session(SessionRecord("crash", "t", "main", "main:start", {}, "en", None, "1", 0, now, now)).result()
pending, seq = deque(), 0
while True:
    while len(pending) < 64:
        seq += 1
        entries = [HistoryRecord(seq, "user", f"message {seq}", {}, time.time())]
        write = TurnWrite("crash", "main", "main:chat", {"n": seq}, "en", None, "1", seq, time.time(), entries=entries)
        pending.append((seq, store.save_turn(write)))
    done, future = pending.popleft()
    future.result()
    print(done, flush=True)
"""


def index_columns(database: peewee.Database, table: str) -> set[tuple[str, ...]]:
    return {tuple(index.columns) for index in database.get_indexes(table)}


def schema_version(database: peewee.Database) -> int:
    return database.execute_sql("SELECT version FROM schema_version").fetchone()[0]


# Not per backend: URLs and the values passed in.


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://root:secret@db/chatbot",
         "db: unsupported database url 'mysql://root:***@db/chatbot' (expected sqlite:///PATH or postgresql://...)"),
        ("chatbot.db", "db: unsupported database url 'chatbot.db' (expected sqlite:///PATH or postgresql://...)"),
        ("sqlite://", "db: sqlite url 'sqlite://' names no file "
                      "(an in-memory database is not shared between connections; use sqlite:///PATH)"),
        ("sqlite:///:memory:", "db: sqlite url 'sqlite:///:memory:' names no file "
                               "(an in-memory database is not shared between connections; use sqlite:///PATH)"),
        ("sqlite://data/chatbot.db",
         "db: sqlite url 'sqlite://data/chatbot.db' has a host (a file path takes three slashes: sqlite:///PATH)"),
        ("postgresql://u:pw@localhost/", "db: postgresql url 'postgresql://u:***@localhost/' names no database"),
    ],
)
def test_unusable_database_urls_are_explained(url, message):
    with pytest.raises(ConfigError) as caught:
        open_database(url)
    assert str(caught.value) == message


def test_sqlite_file_gets_its_directory_and_pragmas(tmp_path):
    database = open_database(f"sqlite:///{tmp_path}/a/b/chatbot.db")
    with database.connection_context():
        pragmas = {name: database.pragma(name) for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
    database.close_all()
    assert (tmp_path / "a" / "b" / "chatbot.db").exists()
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "busy_timeout": 5000}


def test_unreachable_postgresql_fails_to_open_with_the_url_in_one_line():
    pytest.importorskip("psycopg2")
    store = Store("postgresql://postgres:pw@127.0.0.1:9/test?connect_timeout=2")
    with pytest.raises(StorageError, match=r"^storage: cannot open 'postgresql://postgres:\*\*\*@127\.0\.0\.1:9/test"):
        store.open()
    with pytest.raises(StorageError) as raised:
        store.open()
    # libpq says "…failed: Connection refused", a tab and "Is the server running…" on the next line.
    assert "\n" not in str(raised.value) and "Connection refused; Is the server running" in str(raised.value)


def test_a_file_where_the_sqlite_folder_should_be_is_named_as_such(tmp_path):
    (tmp_path / "data").write_text("")
    with pytest.raises(ConfigError) as raised:
        open_database(f"sqlite:///{tmp_path}/data/chatbot.db")
    assert str(raised.value) == (f"db: cannot create the directory of '{tmp_path}/data/chatbot.db': "
                                 f"{tmp_path}/data is a file, not a folder")


def test_sqlite_writes_wait_for_another_writer(tmp_path):
    # A second process holding the write lock briefly delays writes instead of failing them.
    backend = _sqlite_backend(tmp_path)
    store = Store(backend.url)
    store.open()
    try:
        with backend.hold_write_lock():
            future = store.create_session(session())
            time.sleep(0.3)
            assert not future.done()
        future.result(10)
    finally:
        store.close()


def test_a_turn_publishes_its_note_when_committed(postgres_url):
    import psycopg2

    channel = f"turns_{os.getpid()}_{time.monotonic_ns()}"  # channels are shared by the whole database
    listener = psycopg2.connect(POSTGRES_DSN)
    listener.autocommit = True
    listener.cursor().execute(f"LISTEN {channel}")
    store = Store(postgres_url, notify_channel=channel)
    store.open()
    try:
        store.create_session(session()).result()
        store.save_turn(replace(turn("s1", 1, entry(1)), expected_seq=0, notify='{"s":"s1","b":1}')).result()
        with pytest.raises(SessionConflict):  # a turn that fails publishes nothing
            store.save_turn(replace(turn("s1", 2, entry(2)), expected_seq=0, notify='{"s":"s1","b":2}')).result()
        deadline = time.monotonic() + 5
        while len(listener.notifies) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
            listener.poll()
        time.sleep(0.2)
        listener.poll()
        assert [(n.channel, n.payload) for n in listener.notifies] == [(channel, '{"s":"s1","b":1}')]
    finally:
        store.close()
        listener.close()


def test_a_percent_encoded_user_and_password_reach_postgresql_decoded(postgres_url):
    import psycopg2

    from chatbot.storage.db import postgresql_connect_params

    role = f"chat@bot:{uuid.uuid4().hex[:8]}"
    schema = parse_qs(urlparse(postgres_url).query)["options"][0].rpartition("=")[2]
    admin = psycopg2.connect(POSTGRES_DSN)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE ROLE "{role}" LOGIN PASSWORD \'p@ss/w:rd\'')
    admin.cursor().execute(f'GRANT ALL ON SCHEMA {schema} TO "{role}"')
    encoded = postgres_url.replace("postgres@", f"{quote(role, safe='')}:p%40ss%2Fw%3Ard@", 1)
    store = Store(encoded)
    try:
        assert postgresql_connect_params(encoded)["password"] == "p@ss/w:rd"
        store.open()
        store.create_session(session()).result()
        assert store.load_session("s1") is not None
        database = store._database
        with database.connection_context():
            assert database.execute_sql("SELECT current_user").fetchone() == (role,)
    finally:
        store.close()
        admin.cursor().execute(f"DROP OWNED BY \"{role}\" CASCADE")
        admin.cursor().execute(f'DROP ROLE "{role}"')
        admin.close()


def test_a_full_disk_is_reported_as_such_not_as_the_rollback_sqlite_already_did(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/chatbot.db")
    store.open()
    try:
        store.create_session(session()).result()
        database = store._database
        with database.connection_context():
            pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
        connect = database._initialize_connection

        def small_disk(conn):  # a database that may grow by two pages stands in for a full disk
            connect(conn)
            conn.execute(f"PRAGMA max_page_count = {pages + 2}")

        database._initialize_connection = small_disk
        database.close_all()
        with pytest.raises(StorageError, match=r"^storage: save_turn of session 's1' failed: "
                                               r"database or disk is full$"):
            for seq in range(1, 20):
                store.save_turn(replace(turn("s1", seq, HistoryRecord(seq, "user", "x" * 3000, {}, 1.0)),
                                        expected_seq=seq - 1)).result()
        database._initialize_connection = connect
        database.close_all()
        assert store.load_session("s1").seq < 19, "the failed turn left nothing behind"
    finally:
        store.close()


def test_turn_notes_need_postgresql(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/chatbot.db")
    store.open()
    try:
        store.create_session(session()).result()
        with pytest.raises(StorageError, match=r"^storage: turn notifications need postgresql$"):
            store.save_turn(replace(turn("s1", 1, entry(1)), notify="{}")).result()
    finally:
        store.close()


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: entry(1, role="system"), "history: role must be 'user' or 'bot', got 'system'"),
        (lambda: TurnWrite("s", "f", "s", {}, "en", None, "1", 1, NOW, client_id="c"),
         "turn: client_id and reply_seq_range go together"),
        (lambda: TurnWrite("s", "f", "s", {}, "en", None, "1", 1, NOW, reply_seq_range=(1, 2)),
         "turn: client_id and reply_seq_range go together"),
        (lambda: TurnWrite("s", "f", "s", {}, "en", None, "1", 1, NOW, client_id="c", reply_seq_range=(3, 2)),
         "turn: reply_seq_range must be (first, last) with first <= last, got (3, 2)"),
        (lambda: Store("sqlite:///x.db", history_limit=0), "store: history_limit must be at least 1, got 0"),
        (lambda: Store("sqlite:///x.db", processed_limit=-1), "store: processed_limit must be at least 1, got -1"),
    ],
)
def test_bad_values_are_refused(build, message):
    with pytest.raises(ValueError) as caught:
        build()
    assert str(caught.value) == message


def test_writes_on_an_event_loop_are_committed_there_a_round_at_a_time(tmp_path):
    url = _sqlite_backend(tmp_path).url
    store = Store(url)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        store.open(loop)
        try:
            assert "chatbot-storage-writer" not in {thread.name for thread in threading.enumerate()}
            await asyncio.wrap_future(store.create_session(session()))
            before = store.write_stats.transactions
            futures = [store.save_turn(turn("s1", n, entry(n))) for n in range(1, 21)]
            assert not any(future.done() for future in futures)  # committed after this round of the loop
            await asyncio.gather(*map(asyncio.wrap_future, futures))
            assert store.write_stats.transactions == before + 1
            # A synchronous write made on the loop commits what is queued instead of waiting for itself.
            queued = store.save_turn(turn("s1", 21, entry(21)))
            assert store.create_user("ann", "ann", "hash").username == "ann"
            assert queued.done()
            store.save_turn(turn("s1", 22, entry(22)))
            store.flush(5)
            # Writes from other threads are committed by the loop too.
            await loop.run_in_executor(None, store.create_user, "bob", "bob", "hash")
            last = store.save_turn(turn("s1", 23, entry(23)))
        finally:
            await loop.run_in_executor(None, store.close)  # commits what is still queued
        assert last.result(0) is None

    asyncio.run(main())
    reopened = Store(url)
    reopened.open()
    try:
        assert seqs(reopened.history("s1")) == list(range(1, 24))
        assert reopened.find_user("bob") is not None
    finally:
        reopened.close()


def test_with_writes_on_a_loop_the_wal_is_checkpointed_by_a_thread(tmp_path, monkeypatch):
    import chatbot.storage.store as store_module

    monkeypatch.setattr(store_module, "CHECKPOINT_INTERVAL", 0.1)
    backend = _sqlite_backend(tmp_path)
    db_file = tmp_path / "db" / "chatbot.db"
    store = Store(backend.url)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        store.open(loop)
        try:
            await asyncio.wrap_future(store.create_session(session()))
            await asyncio.gather(*(asyncio.wrap_future(store.save_turn(turn("s1", n, entry(n))))
                                   for n in range(1, 11)))
            await asyncio.sleep(0.5)
            # The database file alone, without its WAL, already holds the turns.
            copy = tmp_path / "copy.db"
            copy.write_bytes(db_file.read_bytes())
            conn = sqlite3.connect(copy)
            try:
                assert conn.execute("SELECT count(*) FROM history").fetchone() == (10,)
            finally:
                conn.close()
        finally:
            await loop.run_in_executor(None, store.close)

    asyncio.run(main())


def test_on_a_loop_a_locked_database_delays_writes_without_blocking_the_loop(tmp_path, monkeypatch):
    import chatbot.storage.writer as writer_module

    backend = _sqlite_backend(tmp_path)
    store = Store(backend.url)

    async def ticks(count: int) -> float:
        """The longest gap between ticks of a 10 ms sleep: how long the loop was kept from running."""
        longest, last = 0.0, time.monotonic()
        for _ in range(count):
            await asyncio.sleep(0.01)
            now = time.monotonic()
            longest, last = max(longest, now - last), now
        return longest

    async def main() -> None:
        loop = asyncio.get_running_loop()
        store.open(loop)
        try:
            await asyncio.wrap_future(store.create_session(session()))
            with backend.hold_write_lock():  # another program's write transaction
                waiting = [store.save_turn(turn("s1", n, entry(n))) for n in (1, 2)]
                assert await ticks(30) < 0.2
                assert not any(future.done() for future in waiting)
            await asyncio.gather(*map(asyncio.wrap_future, waiting))  # committed once the lock is gone
            assert seqs(await loop.run_in_executor(None, store.history, "s1")) == [1, 2]

            monkeypatch.setattr(writer_module, "BUSY_WAIT", 0.3)
            with backend.hold_write_lock():
                failing = store.save_turn(turn("s1", 3, entry(3)))
                with pytest.raises(StorageError, match=r"^storage: save_turn of session 's1' failed: .*locked"):
                    await asyncio.wait_for(asyncio.wrap_future(failing), 5)
            await asyncio.wrap_future(store.save_turn(turn("s1", 3, entry(3))))  # and the next one lands
        finally:
            await loop.run_in_executor(None, store.close)

    asyncio.run(main())


STORE_OPENER = """
import sys, time
from chatbot.storage import Store
start = float(sys.argv[2])
while time.time() < start:  # all at once, as workers starting together
    time.sleep(0.001)
store = Store(sys.argv[1])
store.open()
store.close()
"""


def test_processes_starting_together_on_an_empty_postgresql_database_all_open_it(postgres_url):
    for _ in range(3):  # a race: it showed in every one of 10 tries before the schema lock
        start = time.time() + 1.0
        openers = [subprocess.Popen([sys.executable, "-c", STORE_OPENER, postgres_url, str(start)],
                                    stderr=subprocess.PIPE, text=True) for _ in range(6)]
        errors = [opener.communicate(timeout=60)[1] for opener in openers]
        assert [opener.returncode for opener in openers] == [0] * 6, "\n".join(errors)
    database = open_database(postgres_url)
    try:
        assert schema_version(database) == LATEST_VERSION
    finally:
        database.close()


@pytest.mark.parametrize("url_query, environ, expected", [
    ("", {}, "10"),  # a server that accepts and never answers must not hang a start
    ("?connect_timeout=3", {}, "3"),
    ("", {"PGCONNECT_TIMEOUT": "2"}, None),  # left to libpq, which reads its environment
    ("?service=slow", {}, None),  # left to libpq, which reads the service file
    ("", {"PGSERVICE": "slow"}, None),
])
def test_connecting_to_postgresql_gives_up_in_seconds_unless_told_otherwise(monkeypatch, url_query, environ,
                                                                             expected):
    from chatbot.storage.db import postgresql_connect_params

    for name in ("PGCONNECT_TIMEOUT", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert postgresql_connect_params(f"postgresql://chat@db.internal/chat{url_query}").get("connect_timeout") == expected


def test_a_slow_batch_that_still_finishes_writes_is_not_stuck_and_a_stop_waits_for_it(tmp_path, monkeypatch):
    from chatbot.storage import writer as writer_module
    from chatbot.storage.db import open_database

    monkeypatch.setattr(writer_module, "STUCK_AFTER", 0.5)
    database = open_database(f"sqlite:///{tmp_path / 'slow.db'}")
    writer = writer_module.GroupCommitWriter(database)
    writer.start()
    seen_stuck = []
    release = threading.Event()

    def slow_write(n: int):
        time.sleep(0.1)  # a database far away: the whole batch takes 3 s, each write a tenth of one
        seen_stuck.append(writer.stuck)
        return n

    futures = [writer.submit(lambda n=n: slow_write(n), f"write {n}") for n in range(30)]
    futures.append(writer.submit(lambda: release.wait(5) and "late", "stalled write"))
    stopping = time.monotonic()
    assert not writer.stop(timeout=0.2), "the stalled write made it stuck"
    assert time.monotonic() - stopping > 3.0, "past its timeout, the stop waited while writes still finished"
    assert writer.stuck and seen_stuck == [False] * 30
    release.set()
    assert [future.result(timeout=5) for future in futures] == [*range(30), "late"]
    database.close_all()
