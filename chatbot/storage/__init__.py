"""Durable storage: sessions, their history, processed message ids and accounts."""

from chatbot.storage.db import open_database
from chatbot.storage.migrations import LATEST_VERSION, migrate
from chatbot.storage.records import HistoryRecord, SessionRecord, TurnWrite, UserRecord, WriteStats
from chatbot.storage.store import SessionConflict, SessionGone, Store, UsernameTaken

__all__ = [
    "HistoryRecord",
    "LATEST_VERSION",
    "SessionConflict",
    "SessionGone",
    "SessionRecord",
    "Store",
    "TurnWrite",
    "UserRecord",
    "UsernameTaken",
    "WriteStats",
    "migrate",
    "open_database",
]
