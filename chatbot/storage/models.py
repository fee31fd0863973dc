"""The tables, as peewee models bound to one database.

peewee binds a model to its database on the class (``Meta.database``), so
classes shared by every store would tie all stores in a process to one
database. ``bind_models`` declares the classes for the database it is given,
the way ``playhouse.migrations.Runner`` declares its history table
(``class History(database.Model)``); each store holds its own set.

Timestamps are float epoch seconds (``time.time()``) everywhere.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import peewee

from chatbot import jsontext


class JSONField(peewee.TextField):
    """A JSON document stored as text, the same on SQLite and PostgreSQL."""

    def db_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return jsontext.dumps(value, sort_keys=True)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


def conversation_from_field() -> peewee.IntegerField:
    """`sessions.conversation_from`, with a default in the database too: during a rolling upgrade
    the servers not yet upgraded insert sessions without it."""
    return peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])


class Models(NamedTuple):
    User: type[peewee.Model]
    Session: type[peewee.Model]
    HistoryEntry: type[peewee.Model]
    ProcessedMessage: type[peewee.Model]


def bind_models(database: peewee.Database) -> Models:
    class User(database.Model):
        username = peewee.CharField(max_length=128)  # as typed
        username_key = peewee.CharField(max_length=128, unique=True)  # the comparison form
        password_hash = peewee.CharField(max_length=255)
        created_at = peewee.DoubleField()

        class Meta:
            table_name = "users"

    class Session(database.Model):
        id = peewee.CharField(max_length=64, primary_key=True)  # public id
        # sha256 hex of the secret token; the token itself is never stored.
        token_hash = peewee.CharField(max_length=64, unique=True)
        flow = peewee.CharField(max_length=128)
        state = peewee.CharField(max_length=128)
        slots = JSONField()
        lang = peewee.CharField(max_length=16)
        user = peewee.ForeignKeyField(User, null=True, on_delete="CASCADE")
        flow_version = peewee.CharField(max_length=64)
        seq = peewee.IntegerField()  # the last history seq handed out
        created_at = peewee.DoubleField()
        updated_at = peewee.DoubleField()
        # Bumped by every turn, for optimistic concurrency between processes.
        version = peewee.IntegerField(default=1)
        # The first seq of the conversation a user leaving started (0: none ended yet); the
        # entries before it were deleted.
        conversation_from = conversation_from_field()

        class Meta:
            table_name = "sessions"

    class HistoryEntry(database.Model):
        # No index of its own: the unique (session, seq) index serves lookups by session.
        session = peewee.ForeignKeyField(Session, on_delete="CASCADE", index=False)
        seq = peewee.IntegerField()
        role = peewee.CharField(max_length=8)  # 'user' | 'bot'
        text = peewee.TextField()
        meta = JSONField()  # buttons, input, in_reply_to, masked
        created_at = peewee.DoubleField()

        class Meta:
            table_name = "history"
            indexes = ((("session", "seq"), True),)

    class ProcessedMessage(database.Model):
        session = peewee.ForeignKeyField(Session, on_delete="CASCADE", index=False)  # as above
        client_id = peewee.CharField(max_length=128)
        first_seq = peewee.IntegerField()  # the seq range the replies took
        last_seq = peewee.IntegerField()
        created_at = peewee.DoubleField()

        class Meta:
            table_name = "processed_messages"
            indexes = ((("session", "client_id"), True),)

    return Models(User, Session, HistoryEntry, ProcessedMessage)
