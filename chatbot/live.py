"""A session as held in memory while it has connections, and what the transport hands in.

`Peer` is a connection as the session layer sees it (the WebSocket handler is one);
`LiveSession` is the in-memory side of a stored session; tokens are made and hashed here.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from chatbot.dialogs import SessionState

#: Processed client ids remembered per session: as many as the store keeps (its processed_limit).
RECENT_IDS = 200
class Peer(Protocol):
    conn_id: str
    client_key: str

    def send(self, frame: dict) -> None:
        """Queue a frame; what is queued leaves in one write by the end of this round of the loop."""

    def send_queued(self) -> None:
        """Write what is queued now."""

    def close(self, code: int, reason: str) -> None: ...


def new_token() -> str:
    return secrets.token_urlsafe(24)  # 192 bits


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class LiveSession:
    id: str
    token_hash: str
    state: SessionState
    seq: int
    created_at: float
    updated_at: float
    peers: set = field(default_factory=set)
    #: Client message ids processed lately → (ack seq, last seq): the same ones the store keeps.
    recent: OrderedDict = field(default_factory=OrderedDict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    detached_at: float | None = None
    #: The first seq of the conversation a user leaving started (0: none ended); what came before was deleted.
    conversation_from: int = 0
    #: Another node rotated the token, and its `auth` has not reached the tabs here: it comes with
    #: that node's note, or, the note missed, the session gets a new token (SessionManager._relay).
    token_unsent: bool = False

    def remember(self, client_id: str, seqs: tuple[int, int]) -> None:
        self.recent[client_id] = seqs
        if len(self.recent) > RECENT_IDS:
            self.recent.popitem(last=False)
