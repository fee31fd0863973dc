"""Cross-node delivery: every connection of a session gets every reply, whichever node produced it.

Several server processes (on one machine or many) share one PostgreSQL.  A
turn's write publishes a small note with `pg_notify` in the same transaction
(see `Store.save_turn`), so the note exists exactly when the turn is
committed.  Every node LISTENs; a node that holds connections of that session
reads the new entries from the database and sends them to its connections.

PostgreSQL rather than Redis: it is already the shared store, notifications
are transactional (never a note for a rolled-back turn, never a committed turn
without its note), and a note missed while a node was disconnected is caught
up from the database, as a client catches up with `last_seq`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any, Callable

from chatbot.errors import StorageError

#: The channel Store publishes turns on (its `notify_channel`).
CHANNEL = "chatbot_turns"
RECONNECT_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)

log = logging.getLogger("chatbot.cluster")


def new_node_id() -> str:
    return secrets.token_hex(4)


def note(session_id: str, node: str, after_seq: int, last_seq: int, auth: dict | None = None, *,
         lang: str | None = None) -> str:
    """The payload published for one committed turn, or for a language a reconnect stored
    (PostgreSQL caps it at 8000 bytes: keep it small)."""
    body: dict[str, Any] = {"s": session_id, "n": node, "a": after_seq, "b": last_seq}
    if auth is not None:
        body["auth"] = auth
    if lang is not None:
        body["lang"] = lang
    return json.dumps(body, separators=(",", ":"))


def _listen(connect: Callable[[], Any]):
    import psycopg2.extensions

    conn = connect()
    try:
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        conn.cursor().execute(f"LISTEN {CHANNEL}")
    except Exception:
        conn.close()
        raise
    return conn


def listening_connection(connect: Callable[[], Any]):
    """A connection that LISTENs for the nodes' turns; StorageError when the database refuses one
    (a role's or the server's connection limit): each node needs one besides its pool."""
    import psycopg2

    try:
        return _listen(connect)
    except psycopg2.Error as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise StorageError(f"storage: cannot open the connection that listens for other nodes' turns: "
                           f"{reason}") from None


class TurnListener:
    """LISTENs on a dedicated psycopg2 connection driven by the event loop."""

    def __init__(self, connect: Callable[[], Any], on_note: Callable[[dict], None],
                 on_reconnect: Callable[[], None]) -> None:
        self.connect = connect
        self.on_note = on_note
        self.on_reconnect = on_reconnect
        self.conn = None
        #: The descriptor watched: a broken psycopg2 connection no longer tells its fileno(), and a
        #: reader left registered on it would swallow the next socket given the same number.
        self._fd: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self._retry: asyncio.Task | None = None

    def start(self) -> None:
        """LISTEN now; raises StorageError if the database will not give a connection for it."""
        self.loop = asyncio.get_running_loop()
        self._listen_on(listening_connection(self.connect))

    def _connect(self):
        """A connection that LISTENs (blocking: run it off the loop once the server runs)."""
        return _listen(self.connect)

    def _listen_on(self, conn) -> None:
        self.conn = conn
        self._fd = conn.fileno()
        self.loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            self.conn.poll()
        except Exception:  # the connection broke: reconnect, then catch up from the database
            log.warning("cluster.listener_lost", exc_info=True)
            self._drop()
            self._retry = self.loop.create_task(self._reconnect())
            return
        while self.conn.notifies:
            notification = self.conn.notifies.pop(0)
            try:
                body = json.loads(notification.payload)
            except ValueError:
                continue
            self.on_note(body)

    def _drop(self) -> None:
        if self.conn is not None:
            self.loop.remove_reader(self._fd)  # before the close frees the number for another socket
            self._fd = None
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    async def _reconnect(self) -> None:
        for attempt in range(1_000_000):
            if self.closed:
                return
            await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
            try:
                conn = await self.loop.run_in_executor(None, self._connect)
            except Exception:
                continue
            if self.closed:
                conn.close()
                return
            self._listen_on(conn)
            self.on_reconnect()
            return

    def close(self) -> None:
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self.loop is not None:
            self._drop()
