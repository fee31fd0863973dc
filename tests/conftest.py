from __future__ import annotations

import os
import uuid

import pytest

POSTGRES_DSN = os.environ.get("CHATBOT_TEST_POSTGRES", "host=127.0.0.1 port=5432 dbname=test user=postgres")


@pytest.fixture
def postgres_url():
    """A database URL on CI's PostgreSQL, in a schema of its own that is dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(POSTGRES_DSN, connect_timeout=3)
    except psycopg2.OperationalError as error:
        pytest.skip(f"postgresql is unreachable ({POSTGRES_DSN}): {str(error).strip()}")
    admin.autocommit = True
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin.cursor().execute(f"CREATE SCHEMA {schema}")
    params = dict(part.split("=", 1) for part in POSTGRES_DSN.split())
    try:
        yield (f"postgresql://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"
               f"?options=-c%20search_path%3D{schema}")
    finally:
        admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
