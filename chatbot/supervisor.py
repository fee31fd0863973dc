"""`chatbot serve --workers N`: N server processes sharing one listening socket.

The parent binds the socket, forks the workers and then only supervises:
it forwards SIGTERM/SIGINT to them, restarts a worker that died unexpectedly,
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
from typing import Callable

RESTART_LIMIT = 20
RESTART_WINDOW = 60.0


def supervise(count: int, run_worker: Callable[[int], int], *, announce=print) -> int:
    """Fork `count` workers running `run_worker(index)`; return the exit code for the parent."""
    children: dict[int, int] = {}
    stopping = False
    restarts: list[float] = []

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = run_worker(index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
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
        code = os.waitstatus_to_exitcode(status)
        if stopping or code == 0:
            worst = max(worst, abs(code))
            continue
        now = time.monotonic()
        restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
        if len(restarts) > RESTART_LIMIT:
            announce(f"worker {index} keeps dying (exit {code}); stopping the others")
            stop(signal.SIGTERM, None)
            worst = max(worst, 1)
            continue
        announce(f"worker {index} (pid {pid}) exited with {code}; starting it again")
        spawn(index)
    return 1 if worst else 0


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    from tornado.netutil import bind_sockets

    return bind_sockets(port, host)
