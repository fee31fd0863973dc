"""The statements of a turn's write, built once and run on the DB-API cursor.

A turn is the hottest write there is (one per chat message). Building its
statements through peewee's query builder cost more than running them, so
they are written out here once per store, from the models' own table and
column names, and executed with plain parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee

from chatbot import jsontext

from chatbot.storage.models import Models
from chatbot.storage.records import TurnWrite


def to_json(value) -> str:
    """The same text as models.JSONField writes."""
    return jsontext.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class TurnStatements:
    #: The session row's UPDATE, by (sets a new token, checks the expected seq).
    updates: dict[tuple[bool, bool], str]
    insert_entry: str
    trim_entries: str
    insert_processed: str
    trim_processed: str

    @classmethod
    def build(cls, database: peewee.Database, models: Models) -> "TurnStatements":
        p = database.param
        opening, closing = database.quote  # e.g. '""'

        def quote(name: str) -> str:
            return f"{opening}{name}{closing}"

        def table(model) -> str:
            return quote(model._meta.table_name)

        def column(field) -> str:
            return quote(field.column_name)

        session, entry, done = models.Session, models.HistoryEntry, models.ProcessedMessage
        assigned = [session.flow, session.state, session.slots, session.lang, session.user, session.flow_version,
                    session.seq, session.updated_at]
        sets = ", ".join(f"{column(field)} = {p}" for field in assigned)
        sets += f", {column(session.version)} = {column(session.version)} + 1"
        # Moved only by a turn that ends the conversation (TurnWrite.forget_before), else kept.
        start = column(session.conversation_from)
        sets += f", {start} = COALESCE({p}, {start})"
        updates = {}
        for token in (False, True):
            for checked in (False, True):
                statement = f"UPDATE {table(session)} SET {sets}"
                if token:
                    statement += f", {column(session.token_hash)} = {p}"
                statement += f" WHERE {column(session.id)} = {p}"
                if checked:
                    statement += f" AND {column(session.seq)} = {p}"
                updates[token, checked] = statement
        entry_columns = [entry.session, entry.seq, entry.role, entry.text, entry.meta, entry.created_at]
        insert_entry = (f"INSERT INTO {table(entry)} ({', '.join(column(f) for f in entry_columns)}) "
                        f"VALUES ({', '.join([p] * len(entry_columns))})")
        trim_entries = (f"DELETE FROM {table(entry)} WHERE {column(entry.session)} = {p} "
                        f"AND {column(entry.seq)} < {p}")
        done_columns = [done.session, done.client_id, done.first_seq, done.last_seq, done.created_at]
        insert_processed = (f"INSERT INTO {table(done)} ({', '.join(column(f) for f in done_columns)}) "
                            f"VALUES ({', '.join([p] * len(done_columns))})")
        done_id, done_session = column(done.id), column(done.session)
        trim_processed = (f"DELETE FROM {table(done)} WHERE {done_session} = {p} AND {done_id} <= "
                          f"(SELECT {done_id} FROM {table(done)} WHERE {done_session} = {p} "
                          f"ORDER BY {done_id} DESC LIMIT 1 OFFSET {p})")
        return cls(updates, insert_entry, trim_entries, insert_processed, trim_processed)

    def update_session(self, cursor, turn: TurnWrite, user_id: int | None) -> int:
        """Update the session row (if it is still at `turn.expected_seq`, when given); return rows changed."""
        cursor.execute(self.updates[self.update_kind(turn)], self.update_params(turn, user_id))
        return cursor.rowcount

    def update_sessions(self, cursor, turns: list[TurnWrite], user_ids: list[int | None]) -> int:
        """`update_session` for turns of one `update_kind`, in one statement; return rows changed in all."""
        cursor.executemany(self.updates[self.update_kind(turns[0])],
                           [self.update_params(turn, user_id) for turn, user_id in zip(turns, user_ids)])
        return cursor.rowcount

    @staticmethod
    def update_kind(turn: TurnWrite) -> tuple[bool, bool]:
        """Which UPDATE a turn needs: (sets a new token, checks the expected seq)."""
        return turn.token_hash is not None, turn.expected_seq is not None

    @staticmethod
    def update_params(turn: TurnWrite, user_id: int | None) -> list:
        params = [turn.flow, turn.state, to_json(turn.slots), turn.lang, user_id, turn.flow_version, turn.seq,
                  turn.updated_at, turn.forget_before]
        if turn.token_hash is not None:
            params.append(turn.token_hash)
        params.append(turn.session_id)
        if turn.expected_seq is not None:
            params.append(turn.expected_seq)
        return params

    def add_entries(self, cursor, turn: TurnWrite) -> None:
        cursor.executemany(self.insert_entry, self.entry_rows(turn))

    @staticmethod
    def entry_rows(turn: TurnWrite) -> list[tuple]:
        return [(turn.session_id, e.seq, e.role, e.text, to_json(e.meta), e.created_at) for e in turn.entries]

    def trim_history(self, cursor, session_id: str, oldest_kept: int) -> None:
        cursor.execute(self.trim_entries, (session_id, oldest_kept))

    def add_processed(self, cursor, turn: TurnWrite) -> None:
        cursor.execute(self.insert_processed, self.processed_row(turn))

    @staticmethod
    def processed_row(turn: TurnWrite) -> tuple:
        first, last = turn.reply_seq_range
        return turn.session_id, turn.client_id, first, last, turn.updated_at

    def trim_processed_ids(self, cursor, session_id: str, keep: int) -> None:
        cursor.execute(self.trim_processed, (session_id, session_id, keep))
