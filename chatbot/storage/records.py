"""Plain values passed between the store and its callers.

They carry no database handles, so they can cross threads and be compared in
tests. ``slots`` and ``meta`` are JSON-compatible dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("user", "bot")


@dataclass(frozen=True)
class HistoryRecord:
    seq: int
    role: str  # 'user' | 'bot'
    text: str
    meta: dict[str, Any]  # buttons, input, in_reply_to, masked
    created_at: float

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"history: role must be 'user' or 'bot', got {self.role!r}")


@dataclass(frozen=True)
class SessionRecord:
    id: str
    token_hash: str
    flow: str
    state: str
    slots: dict[str, Any]
    lang: str
    user: str | None  # the username as typed, None while anonymous
    flow_version: str
    seq: int
    created_at: float
    updated_at: float
    #: The first seq of the conversation a user leaving started; 0 while none has ended.
    conversation_from: int = 0


@dataclass(frozen=True)
class TurnWrite:
    """Everything one turn changes, written as one atomic unit."""

    session_id: str
    flow: str
    state: str
    slots: dict[str, Any]
    lang: str
    user: str | None
    flow_version: str
    seq: int
    updated_at: float
    token_hash: str | None = None  # set when the token was rotated
    entries: tuple[HistoryRecord, ...] = field(default=())
    client_id: str | None = None  # the client's message id, for re-ack after reconnect
    reply_seq_range: tuple[int, int] | None = None  # seqs the replies to client_id took
    # Optimistic concurrency between processes: the write fails with
    # SessionConflict unless the stored session is still at this seq.
    expected_seq: int | None = None
    # Published with pg_notify in the same transaction, so it is seen exactly
    # when the turn is committed (PostgreSQL only).
    notify: str | None = None
    # A user left (a logout, another user's login): the session's entries with a lower seq are
    # deleted with the turn, so the next person at the page cannot read the one who left.
    forget_before: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        if (self.client_id is None) != (self.reply_seq_range is None):
            raise ValueError("turn: client_id and reply_seq_range go together")
        if self.reply_seq_range is not None:
            first, last = self.reply_seq_range
            if first > last:
                raise ValueError(
                    f"turn: reply_seq_range must be (first, last) with first <= last, got {self.reply_seq_range}"
                )


@dataclass(frozen=True)
class UserRecord:
    id: int
    username: str  # as typed
    username_key: str  # the comparison form, unique
    password_hash: str
    created_at: float


@dataclass(frozen=True)
class WriteStats:
    """Counters of the writer, to see how well writes are grouped."""

    writes: int  # writes applied or failed
    transactions: int  # transactions committed
    failures: int  # writes whose future got an exception
