"""Create and upgrade the schema, one numbered step at a time.

The ``schema_version`` table holds one row: the number of steps applied.
``MIGRATIONS[n - 1]`` takes a database from version ``n - 1`` to ``n``; each
step runs in its own transaction together with the version bump, so a step is
either applied and recorded or neither.

Step 1 creates the tables from the models. Later changes are added as new
steps only and never edit an applied one. A step that adds a column must also
freeze step 1 (a copy of the tables as they were, as peewee's migration docs
advise), because step 1 would otherwise already create the new column.

Several server processes may start at once, on an empty database too: the
version table is created under an advisory lock on PostgreSQL (SQLite has one
writer at a time), and each step locks the version row first (BEGIN IMMEDIATE
on SQLite, SELECT ... FOR UPDATE on PostgreSQL) and rereads it, so one process
applies a step and the others skip it.
"""

from __future__ import annotations

from typing import Callable

import peewee
from playhouse.migrate import SchemaMigrator

from chatbot.errors import StorageError
from chatbot.storage.models import Models, bind_models, conversation_from_field

Step = Callable[[SchemaMigrator, Models], None]


#: Columns that steps after the first add: (table, column). Step 1 leaves them out.
ADDED_LATER = (("sessions", "conversation_from"),)


def _create_tables(migrator: SchemaMigrator, models: Models) -> None:
    # The tables as version 1 had them: a fresh copy of the models, less what later steps add.
    first = bind_models(migrator.database)
    for table, column in ADDED_LATER:
        model = next(model for model in first if model._meta.table_name == table)
        model._meta.remove_field(column)
    migrator.database.create_tables(first, safe=False)


def _index_expiry_and_owner_lookups(migrator: SchemaMigrator, models: Models) -> None:
    # delete_expired scans sessions by age; turns resolve a session's owner by name.
    migrator.migrate(
        migrator.add_index("sessions", ("updated_at",)),
        migrator.add_index("sessions", ("created_at",)),
        migrator.add_index("users", ("username",)),
    )


def _remember_where_the_conversation_starts(migrator: SchemaMigrator, models: Models) -> None:
    # A tab that was away while its user logged out and back in learns from it that what it
    # shows was forgotten.
    migrator.migrate(migrator.add_column("sessions", "conversation_from", conversation_from_field()))


MIGRATIONS: tuple[Step, ...] = (
    _create_tables,
    _index_expiry_and_owner_lookups,
    _remember_where_the_conversation_starts,
)
LATEST_VERSION = len(MIGRATIONS)
#: The PostgreSQL advisory lock that processes creating the version table at once queue on.
SCHEMA_LOCK_KEY = 0x63686174626F74  # "chatbot"


def migrate(database: peewee.Database, models: Models, *, target: int = LATEST_VERSION) -> int:
    """Apply the pending steps up to ``target``; return the version reached."""
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"migrate: target must be 0..{LATEST_VERSION}, got {target}")

    class SchemaVersion(database.Model):
        version = peewee.IntegerField()

        class Meta:
            table_name = "schema_version"

    migrator = SchemaMigrator.from_database(database)
    with database.connection_context():
        with database.atomic():
            if isinstance(database, peewee.PostgresqlDatabase):
                # CREATE TABLE IF NOT EXISTS is not safe against itself on PostgreSQL: two
                # processes creating the table at once collide in the catalog.
                database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            database.create_tables([SchemaVersion])
            SchemaVersion.insert(id=1, version=0).on_conflict_ignore().execute()
        version = _locked_version(database, SchemaVersion)
        if version > LATEST_VERSION:
            raise StorageError(
                f"storage: the database schema is at version {version}, "
                f"newer than this program knows ({LATEST_VERSION})"
            )
        for step_version in range(version + 1, target + 1):
            with migrator.migration_context():
                version = _locked_version(database, SchemaVersion)
                if version >= step_version:
                    continue  # another process applied it meanwhile
                MIGRATIONS[step_version - 1](migrator, models)
                SchemaVersion.update(version=step_version).where(SchemaVersion.id == 1).execute()
                version = step_version
    return version


def _locked_version(database: peewee.Database, schema_version: type[peewee.Model]) -> int:
    # FOR UPDATE where the database has it; SQLite's BEGIN IMMEDIATE already
    # holds the only write lock.
    query = schema_version.select(schema_version.version).where(schema_version.id == 1)
    return query.for_update(database.for_update).scalar()
