"""`chatbot serve --workers N`'s supervisor as processes: stop signals always reach every worker; a failing
worker says why and is restarted after a growing pause."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from chatbot import supervisor
from chatbot.errors import ChatbotError, ConfigError
from chatbot.storage import LATEST_VERSION
from tests.process_helpers import LISTENING, StderrLines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Group:
    """A process started in a session of its own, so that every worker it forks can be found and killed."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
        self.stderr = StderrLines(self.proc.stderr)

    def read_until(self, pattern: str, timeout: float = 20.0) -> re.Match:
        found = self.stderr.search(pattern, timeout)
        if found is None:
            raise AssertionError(f"no {pattern!r} in: {''.join(self.stderr.lines)}")
        return found

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout} s: {''.join(self.stderr.lines)}") from None

    def rest(self) -> str:
        return self.stderr.rest()

    def alive(self) -> bool:
        """Whether any process of the group (the parent or a worker) still runs."""
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def gone(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.alive()

    def close(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.stderr.rest()  # to its end: the reading thread is done with the pipe
        self.proc.stderr.close()


def serve(tmp_path, *args: str) -> Group:
    return Group([sys.executable, "-m", "chatbot", "serve", "--port", "0", "--data-dir", str(tmp_path),
                  "--log-format", "none", *args])


def supervised(*bodies: str) -> Group:
    """`supervise` running the `run_worker` (and anything else) that `bodies` define."""
    script = ("import os, signal, sys, time\nfrom chatbot import supervisor\n"
              + "".join(map(textwrap.dedent, bodies))
              + "\nsys.exit(supervisor.supervise(COUNT, run_worker, "
              "announce=lambda line: sys.stderr.write(line + '\\n')))\n")
    return Group([sys.executable, "-c", script])


# A worker as `chatbot serve` runs one: it says it is up and stops cleanly on SIGTERM. Every line is
# written in one call, as `chatbot serve` writes them (`print` writes the newline apart, and two
# workers' lines would then run into one).
SERVING = """
def run_worker(index):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stderr.write(f"worker {index} up as {os.getpid()}\\n")
    while True:
        signal.pause()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_an_interrupt_or_a_hangup_stops_every_worker_too(tmp_path, postgres_url, signum):
    # A closed terminal or ssh session sends SIGHUP: no worker may go on serving the port alone.
    server = serve(tmp_path, "--workers", "2", "--db", postgres_url)
    try:
        server.read_until(LISTENING.pattern)
        time.sleep(1)  # the workers are serving
        server.signal(signum)
        assert server.wait(20) == 0
        assert server.gone(), "a worker outlived its parent"
    finally:
        server.close()


@pytest.mark.parametrize("workers", [2, 4])
def test_a_sigterm_as_the_server_starts_stops_every_worker(tmp_path, postgres_url, workers):
    for _ in range(8):
        server = serve(tmp_path, "--workers", str(workers), "--db", postgres_url)
        try:
            server.read_until(LISTENING.pattern)
            server.signal(signal.SIGTERM)
            # "listening" is said once the parent handles stop signals: it stops, and says so. A worker
            # still opening its database connections finishes that first (seconds on a starved machine).
            assert server.wait(60) == 0
            assert server.gone(), "a worker outlived its parent"
        finally:
            server.close()


def test_a_sigterm_between_fork_and_recording_the_worker_reaches_it():
    # The signal arrives in the parent after each fork, before the worker is recorded.
    server = supervised("""
        COUNT = 3
        fork = os.fork
        def forking():
            pid = fork()
            if pid:
                os.kill(os.getpid(), signal.SIGTERM)
            return pid
        os.fork = forking
    """, SERVING)
    try:
        assert server.wait(20) == 0
        assert server.gone(), "a worker outlived its parent"
    finally:
        server.close()


def test_a_stop_signal_forwarded_to_a_worker_still_starting_stops_it():
    # The worker is slow to take over from the parent's handlers; the signal arrives meanwhile.
    server = supervised("""
        COUNT = 1
        fork = os.fork
        def forking():
            pid = fork()
            if pid == 0:
                sys.stderr.write("forked\\n")
                time.sleep(1)
            return pid
        os.fork = forking
    """, SERVING)
    try:
        server.read_until("forked")
        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0
        assert server.gone(), "the worker outlived its parent"
    finally:
        server.close()


def nosuchdb(postgres_url: str) -> str:
    parts = urlsplit(postgres_url)
    return urlunsplit((parts.scheme, parts.netloc, "/nosuchdb_for_chatbot_tests", "", ""))


def newer_schema(postgres_url: str) -> str:
    """The URL of a database whose schema a later version of the program made."""
    import psycopg2

    from chatbot.storage import Store
    from chatbot.storage.db import postgresql_connect_params

    store = Store(postgres_url)
    store.open()
    store.close()
    connection = psycopg2.connect(**postgresql_connect_params(postgres_url))
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("UPDATE schema_version SET version = %s", (LATEST_VERSION + 5,))
    finally:
        connection.close()
    return postgres_url


@pytest.mark.parametrize("database", [newer_schema, nosuchdb], ids=["newer schema", "no such database"])
def test_a_database_no_worker_could_use_is_refused_at_once_as_with_one_worker(tmp_path, postgres_url, database):
    # Every worker would fail on it, and the supervisor start them again for half a minute.
    url = database(postgres_url)
    outputs = {}
    for workers in ("1", "2"):
        server = serve(tmp_path, "--workers", workers, "--db", url)
        try:
            # Well short of that half minute, however long a loaded machine takes to start Python.
            assert server.wait(20) == 1
            outputs[workers] = server.rest()
            assert server.gone()
        finally:
            server.close()
    assert outputs["2"] == outputs["1"]
    if database is newer_schema:
        assert outputs["2"] == (f"error: storage: the database schema is at version {LATEST_VERSION + 5}, "
                                f"newer than this program knows ({LATEST_VERSION})\n")
    else:
        assert outputs["2"].startswith("error: storage: cannot open") and outputs["2"].count("error:") == 1
        assert 'database "nosuchdb_for_chatbot_tests" does not exist' in outputs["2"]


def test_a_worker_that_cannot_start_says_why_and_is_restarted_after_growing_pauses():
    # `chatbot serve` opened the database before forking, and it went away since, say.
    server = supervised("""
        COUNT = 1
        from chatbot.errors import StorageError
        def run_worker(index):
            raise StorageError("storage: cannot open 'postgresql://db/chatbot': connection refused")
    """)
    try:
        started = time.monotonic()
        pauses = [float(server.read_until(r"exited with 1; starting it again in ([\d.]+) s").group(1))
                  for _ in range(7)]
        assert time.monotonic() - started > 1.5, "restarted in a tight loop"
        assert pauses == sorted(pauses) and pauses[-1] > pauses[0]
        server.signal(signal.SIGTERM)
        assert server.wait(10) == 0, "workers waiting to start again stop at once"
        output = server.rest()
    finally:
        server.close()
    assert "error: storage: cannot open 'postgresql://db/chatbot': connection refused\n" in output
    assert "keeps dying" not in output


def test_a_worker_that_keeps_dying_is_given_up_on_with_the_rule_stated():
    server = supervised("""
        COUNT = 2
        supervisor.RESTART_LIMIT = 4
        supervisor.BACKOFF_FIRST = 0.02
        from chatbot.errors import ConfigError
        def run_worker(index):
            if index == 0:
                raise ConfigError("--thing: not usable")
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while True:
                signal.pause()
    """)
    try:
        assert server.wait(20) == 1
        output = server.rest()
        assert server.gone()
    finally:
        server.close()
    assert output.count("error: --thing: not usable\n") == 5
    assert "worker 0 keeps dying (exited with 2): more than 4 restarts within 60 s; stopping the others" in output
    delays = re.findall(r"worker 0 \(pid \d+\) exited with 2; starting it again in ([\d.]+) s", output)
    assert delays == ["0.02", "0.04", "0.08", "0.16"]


def test_a_worker_failing_from_a_bug_shows_its_traceback():
    server = supervised("""
        COUNT = 1
        def run_worker(index):
            return {}["missing"]
    """)
    try:
        server.read_until("Traceback")
        server.read_until("KeyError: 'missing'")
        server.read_until(r"worker 0 \(pid \d+\) exited with 1; starting it again")
        server.signal(signal.SIGTERM)
        assert server.wait(10) == 0
        assert server.gone()
    finally:
        server.close()


def test_a_worker_ended_alone_is_started_again_and_its_restarts_are_its_own():
    # SERVING's workers say their pid, end with 0 on a SIGTERM of their own (as a server does),
    # and are killed with SIGKILL: each worker ends three times, six in all, against a limit of 4.
    server = supervised("""
        COUNT = 2
        supervisor.RESTART_LIMIT = 4
        supervisor.BACKOFF_FIRST = 0.02
    """, SERVING)
    def up() -> list[int]:
        pids = {}
        while len(pids) < 2:
            found = server.read_until(r"worker (\d) up as (\d+)")
            pids[found.group(1)] = int(found.group(2))
        return list(pids.values())

    try:
        for signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGTERM):
            for pid in up():
                os.kill(pid, signum)
        up()
        server.signal(signal.SIGTERM)
        assert server.wait(10) == 0
        output = server.rest()
        assert server.gone()
    finally:
        server.close()
    assert len(re.findall(r"\(pid \d+\) exited with 0; starting it again", output)) == 4
    assert len(re.findall(r"\(pid \d+\) was killed by SIGKILL; starting it again", output)) == 2
    assert "keeps dying" not in output


@pytest.mark.parametrize("failure", [ConfigError("--thing: not usable"), ChatbotError("storage: gone"),
                                     SystemExit("cannot go on"), KeyError("missing")],
                         ids=["config", "chatbot", "exit", "bug"])
def test_a_failing_worker_writes_each_line_of_why_in_one_call(monkeypatch, failure):
    # The workers share stderr: a line written in two calls (as `print` does) can have another
    # worker's line written into it.
    writes = []

    class Recorder:
        def write(self, text):
            writes.append(text)

        def flush(self):
            pass

    def run_worker(index):
        raise failure

    monkeypatch.setattr(sys, "stderr", Recorder())
    handlers = {signum: signal.getsignal(signum) for signum in supervisor.STOP_SIGNALS}
    try:
        assert supervisor._worker(run_worker, 0, 0, signal.pthread_sigmask(signal.SIG_BLOCK, [])) in (1, 2)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert len(writes) == 1 and writes[0].endswith("\n"), writes
    assert str(failure).strip("'") in writes[0]
