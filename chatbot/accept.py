"""Accepting connections when the process may run out of file descriptors.

Every connection takes a descriptor. When none is left, `accept()` fails with EMFILE
while the connection stays queued, so the listening socket stays readable: Tornado's
accept handler then raises on every round of the event loop, which spins at a full core
and logs a traceback each time, until connections close. Here accepting pauses instead,
and the queued connections wait in the kernel's backlog until descriptors are free again.

`socket_capacity` keeps it from coming to that in the first place: the server turns away
connections past what its descriptors allow while it still has descriptors for its database
and logs.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, Callable

from tornado.ioloop import IOLoop

#: Seconds accepting pauses when the process (or the system) has no descriptor left.
PAUSE = 0.5
#: Descriptors kept for what is not a connection: the database, the log files, the event loop's
#: own, the threads' pipes, a page or /healthz request.
RESERVED = 64
#: accept() errors that mean "no resources for one more connection now", not a broken socket.
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: At most this many connections are taken per readiness event, as Tornado does (its backlog).
BATCH = 128


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (children inherit it);
    return the soft limit now.

    Many systems start processes with a soft limit of 1,024, far below what a chat server with
    its default `max_connections` needs; the hard limit is the administrator's real cap.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        # An infinite soft limit is refused (the kernel caps descriptors): take a million then.
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # refused all the same: keep the old one
            pass
    return soft


def socket_capacity() -> int:
    """How many sockets (connections) fit in the open-files limit, with RESERVED kept for the rest."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(1, soft - RESERVED)


def add_patient_accept_handler(sock: socket.socket, callback: Callable[[socket.socket, Any], None],
                               on_exhausted: Callable[[OSError], None]) -> Callable[[], None]:
    """`tornado.netutil.add_accept_handler`, pausing for PAUSE seconds when accept() runs out of
    descriptors (after calling `on_exhausted`); return the function that stops accepting."""
    io_loop = IOLoop.current()
    removed = False
    paused = None

    def accept(fd: Any, events: int) -> None:
        for _ in range(BATCH):
            if removed:
                return
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:  # closed by the client while it was queued
                continue
            except OSError as error:
                if error.errno not in EXHAUSTED:
                    raise
                pause()
                on_exhausted(error)
                return
            callback(connection, address)

    def pause() -> None:
        nonlocal paused
        io_loop.remove_handler(sock)
        paused = io_loop.call_later(PAUSE, resume)

    def resume() -> None:
        nonlocal paused
        paused = None
        if not removed:
            io_loop.add_handler(sock, accept, IOLoop.READ)

    def remove() -> None:
        nonlocal removed
        removed = True
        if paused is not None:
            io_loop.remove_timeout(paused)
        else:
            io_loop.remove_handler(sock)

    io_loop.add_handler(sock, accept, IOLoop.READ)
    return remove
