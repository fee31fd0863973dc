"""A real server on a free port and a real WebSocket client, for the server tests."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from contextlib import asynccontextmanager

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from chatbot.config import Settings
from chatbot.logs import EventLog
from chatbot.server import ChatServer
from tests.engine_helpers import make_engine

ENGINE = None


def shared_engine():
    """Flows are read once per test run: building the engine is the slow part of a server's start."""
    global ENGINE
    if ENGINE is None:
        ENGINE = make_engine()
    return ENGINE


def test_settings(tmp_path, **overrides) -> Settings:
    values = dict(port=0, data_dir=str(tmp_path), log_format="none", session_evict_after=0.2)
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_server(tmp_path, engine=None, **overrides):
    settings = test_settings(tmp_path, **overrides)
    server = ChatServer(settings, engine or shared_engine(), EventLog(logging.getLogger("chatbot.events")))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class Client:
    """One WebSocket connection speaking the chat protocol."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.counter = 0
        # Ids must differ between clients of one session: a repeated id is a duplicate, acked unprocessed.
        self.id_prefix = secrets.token_hex(4)
        self.frames: list[dict] = []  # everything received, in order

    @classmethod
    async def connect(cls, port: int, *, origin: str | None = None, path: str = "/ws",
                      deflate: bool = False) -> "Client":
        """`deflate`: offer permessage-deflate (used if the server enables it)."""
        headers = {"Origin": origin} if origin else {}
        request = HTTPRequest(f"ws://127.0.0.1:{port}{path}", headers=headers)
        return cls(await websocket_connect(request, compression_options={} if deflate else None))

    async def send(self, frame) -> None:
        await self.conn.write_message(frame if isinstance(frame, (str, bytes)) else json.dumps(frame),
                                      binary=isinstance(frame, bytes))

    async def recv(self, timeout: float = 5.0) -> dict | None:
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        if raw is None:
            return None
        frame = json.loads(raw)
        self.frames.append(frame)
        return frame

    async def recv_until(self, kind: str, timeout: float = 5.0, **match) -> list[dict]:
        """Frames up to and including the first of `kind` whose fields equal `match`."""
        got = []
        while True:
            frame = await self.recv(timeout)
            assert frame is not None, f"connection closed while waiting for {kind}: {got}"
            got.append(frame)
            if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                return got

    async def hello(self, **fields) -> dict:
        await self.send({"type": "hello", **fields})
        frames = await self.recv_until("welcome")
        return frames[-1]

    def next_id(self) -> str:
        self.counter += 1
        return f"c-{self.id_prefix}-{self.counter}"

    async def say(self, text: str, *, id: str | None = None) -> list[dict]:
        """Send a message; return the frames up to its ack; replies are those of type 'reply'."""
        id = id or self.next_id()
        await self.send({"type": "message", "id": id, "text": text})
        return await self.recv_until("ack", id=id)

    async def press(self, action: str, *, id: str | None = None) -> list[dict]:
        id = id or self.next_id()
        await self.send({"type": "action", "id": id, "name": action})
        return await self.recv_until("ack", id=id)

    def close(self) -> None:
        self.conn.close()


def replies(frames: list[dict]) -> list[str]:
    return [frame["text"] for frame in frames if frame["type"] == "reply"]


def new_token(frames: list[dict]) -> str:
    """The resume token of the `auth` frame among `frames` (login and logout rotate it)."""
    return next(frame for frame in frames if frame["type"] == "auth")["resume"]


async def register(client: Client, username: str = "ann", password: str = "correct horse battery") -> list[dict]:
    """Go through the registration dialog; return the frames of its last step (the `auth` among them)."""
    frames = await client.press("register")
    assert replies(frames)[-1].startswith("Choose a username")
    frames = await client.say(username)
    assert frames[-2]["input"] == "password"
    await client.say(password)
    return await client.say(password)
