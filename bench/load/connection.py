"""One client connection of the load generator, speaking the chat protocol (docs/protocol.md).

The client is Tornado's own WebSocket client: it is already a dependency, it
masks frames in C (`tornado.speedups`) and runs on the asyncio loop with no
thread of its own.  Measured against the `websockets` library (17.x) on this
kind of machine it reached the same messages per second against the echo
server, at about a fifth more client CPU per message; that difference only
matters for the echo baseline, and each run prints the generator's CPU so a
client-bound figure shows.

A request is complete when the first frame carrying its `id` arrives: the
chat server's `ack` (after every `reply`, so the whole turn is timed), the echo
server's copy of the frame, or an `error` whose `in_reply_to` names it.
"""

from __future__ import annotations

import asyncio
import json
import time

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


class ConnectionClosed(Exception):
    """The server closed the connection while a request was waiting."""


class RequestTimeout(Exception):
    """No completing frame arrived in time."""


def _consume(future) -> None:
    # A write to a connection that closed meanwhile fails; the waiting request reports it.
    if not future.cancelled():
        future.exception()


class BenchConnection:
    """A WebSocket to the server under test, with requests matched to their completing frame by id."""

    __slots__ = ("conn", "prefix", "counter", "pending", "greeting", "token", "user", "session", "errors",
                 "closed", "resumed")

    def __init__(self, prefix: str) -> None:
        self.conn = None
        self.prefix = prefix
        self.counter = 0
        self.pending: dict[str, tuple[asyncio.Future, float]] = {}
        self.greeting: asyncio.Future | None = None
        self.token: str | None = None
        self.user: str | None = None
        self.session: str | None = None
        self.resumed: bool | None = None
        self.errors = 0
        self.closed = False

    @classmethod
    async def open(cls, url: str, prefix: str, *, timeout: float) -> "BenchConnection":
        self = cls(prefix)
        request = HTTPRequest(url, connect_timeout=timeout, request_timeout=timeout)
        self.conn = await websocket_connect(request, on_message_callback=self._on_frame)
        return self

    def next_id(self) -> str:
        self.counter += 1
        return f"{self.prefix}{self.counter}"

    # --- receiving -----------------------------------------------------------------------
    def _on_frame(self, raw: str | bytes | None) -> None:
        if raw is None:
            self._closed()
            return
        frame = json.loads(raw)
        kind = frame.get("type")
        if kind == "welcome" or kind == "hello":  # the echo server answers hello with hello
            self.token = frame.get("resume")
            self.user = frame.get("user")
            self.session = frame.get("session")
            self.resumed = frame.get("resumed")
            if self.greeting is not None and not self.greeting.done():
                self.greeting.set_result(frame)
            if kind == "welcome":
                return
        elif kind == "auth":
            self.token = frame["resume"]
            self.user = frame["user"]
            return
        elif kind == "error":
            self.errors += 1
            self._complete(frame.get("in_reply_to"), frame)
            return
        elif kind == "user":  # another connection's message in the same session
            return
        self._complete(frame.get("id"), frame)

    def _complete(self, key: str | None, frame: dict) -> None:
        if key is None:
            return
        entry = self.pending.pop(key, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(frame)

    def _closed(self) -> None:
        self.closed = True
        waiting = [entry[0] for entry in self.pending.values()]
        if self.greeting is not None:
            waiting.append(self.greeting)
        self.pending.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(ConnectionClosed("server closed the connection"))

    def expire(self, sent_before: float) -> int:
        """Fail the requests sent before `sent_before` (time.monotonic()); return how many."""
        late = [key for key, (_, sent) in self.pending.items() if sent < sent_before]
        for key in late:
            future = self.pending.pop(key)[0]
            if not future.done():
                future.set_exception(RequestTimeout(f"no answer to {key}"))
        return len(late)

    # --- sending -------------------------------------------------------------------------
    def send(self, frame: dict, sent_at: float | None = None) -> asyncio.Future:
        """Send a frame with an `id`; the future gets the frame that completes it."""
        future = asyncio.get_running_loop().create_future()
        if self.closed:
            future.set_exception(ConnectionClosed("connection is closed"))
            return future
        self.pending[frame["id"]] = (future, time.monotonic() if sent_at is None else sent_at)
        self.conn.write_message(json.dumps(frame)).add_done_callback(_consume)
        return future

    async def ask(self, frame: dict, timeout: float) -> dict:
        return await asyncio.wait_for(self.send(frame), timeout)

    async def hello(self, timeout: float, **fields) -> dict:
        """Send `hello`; return the `welcome` (or, from the echo server, the copy of the hello)."""
        self.greeting = asyncio.get_running_loop().create_future()
        self.conn.write_message(json.dumps({"type": "hello", **fields})).add_done_callback(_consume)
        return await asyncio.wait_for(self.greeting, timeout)

    async def say(self, text: str, timeout: float) -> dict:
        return await self.ask({"type": "message", "id": self.next_id(), "text": text}, timeout)

    async def press(self, action: str, timeout: float) -> dict:
        return await self.ask({"type": "action", "id": self.next_id(), "name": action}, timeout)

    # --- accounts ------------------------------------------------------------------------
    async def register(self, username: str, password: str, timeout: float) -> bool:
        """Register through the dialog (button, username, password, confirmation); True when logged in."""
        await self.press("register", timeout)
        await self.say(username, timeout)
        await self.say(password, timeout)
        await self.say(password, timeout)
        return self.user == username

    async def login(self, username: str, password: str, timeout: float) -> bool:
        """Log in through the dialog (button, username, password); True when logged in."""
        await self.press("login", timeout)
        await self.say(username, timeout)
        await self.say(password, timeout)
        return self.user == username

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
