"""`chatbot serve --workers N`: N server processes sharing one listening socket.

The parent binds the socket, forks the workers and then only supervises:
it forwards SIGTERM/SIGINT/SIGHUP to them, restarts a worker that died unexpectedly,
and exits once all have stopped.  (Tornado's `fork_processes` restarts
workers too, but does not pass a stop signal on, which would leave workers
running after their parent stopped.)
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import traceback
from typing import Callable

from chatbot.errors import ChatbotError, ConfigError

RESTART_LIMIT = 20
RESTART_WINDOW = 60.0
# A worker that keeps failing (its database is down, say) is started again after a pause that
# doubles with each restart within RESTART_WINDOW, so that it neither spins nor floods the log.
# The longest pause still lets RESTART_LIMIT restarts fit in the window: one that fails as soon as
# it starts is given up on after about half a minute (one that takes longer to fail may never be).
BACKOFF_FIRST = 0.1
BACKOFF_LONGEST = 2.0
#: SIGHUP too: a closed terminal or ssh session would otherwise kill the supervisor alone and
#: leave its workers serving the port with no parent.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def supervise(count: int, run_worker: Callable[[int], int], *, announce=print,
              ready: Callable[[], None] = lambda: None, ended: Callable[[int], None] = lambda pid: None,
              early_stops: list[int] | None = None) -> int:
    """Fork `count` workers running `run_worker(index)`; return the exit code for the parent.

    `ready` runs once a stop signal would be handled: what tells the world the server is up
    (the "listening" line a caller waits for before it may send SIGTERM) belongs there.
    `ended(pid)` runs once a worker has ended, before any worker is started in its place.
    `early_stops`: stop signals that came before this was called; then no worker is started.
    """
    children: dict[int, int] = {}
    stopping = False
    #: Each worker's restarts within RESTART_WINDOW: a node's workers dying now and then (say, of
    #: the OOM killer) do not add up to one that keeps dying.
    restarts: dict[int, list[float]] = {index: [] for index in range(count)}

    def spawn(index: int, pause: float = 0.0) -> bool:
        # Blocked, a stop signal waits until the new worker is in `children`, where `stop` finds it,
        # and, in the worker, until it has its own handlers: the parent's `stop` would swallow it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            if stopping:
                return False
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = _worker(run_worker, index, pause, mask)
                finally:
                    os._exit(code)
            children[pid] = index
            return True
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    if early_stops:
        return 0
    ready()
    for index in range(count):
        spawn(index)
    worst = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, None)
        if index is None:
            continue
        ended(pid)
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            # A worker still starting, or waiting to start again, has no handler of its own yet.
            if -code not in STOP_SIGNALS:
                worst = max(worst, abs(code))
            continue
        # Not asked to stop, a worker that ended (even with 0: a SIGTERM sent to it alone) is missed.
        now = time.monotonic()
        mine = restarts[index] = [t for t in restarts[index] if now - t < RESTART_WINDOW] + [now]
        if len(mine) > RESTART_LIMIT:
            announce(f"worker {index} keeps dying ({_ended(code)}): more than {RESTART_LIMIT} restarts within "
                     f"{RESTART_WINDOW:g} s; stopping the others")
            stop(signal.SIGTERM, None)
            worst = max(worst, 1)
            continue
        pause = min(BACKOFF_LONGEST, BACKOFF_FIRST * 2 ** (len(mine) - 1))
        if spawn(index, pause):
            announce(f"worker {index} (pid {pid}) {_ended(code)}; starting it again in {pause:g} s")
    return 1 if worst else 0


def _ended(code: int) -> str:
    """How a worker ended, from its exit code (negative: the signal that killed it)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with {code}"


def _worker(run_worker: Callable[[int], int], index: int, pause: float, mask) -> int:
    """Run one worker in the forked child; its exit code, with why it failed said as `chatbot serve` says it."""
    try:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        time.sleep(pause)
        return run_worker(index)
    except ConfigError as err:
        _say(f"error: {err}\n")
        return 2
    except ChatbotError as err:
        _say(f"error: {err}\n")
        return 1
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        _say(f"{exit_.code}\n")
        return 1
    except BaseException:
        _say(traceback.format_exc())
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


def _say(text: str) -> None:
    """Write `text` to stderr in one call: `print` writes the line and its newline apart, and the
    workers share the stream, so two workers failing together would run their lines into one."""
    sys.stderr.write(text)


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    from tornado.netutil import bind_sockets

    return bind_sockets(port, host)
