"""Reads from async code (`Database.read`): what an SSE stream reads after every event."""

import anyio
import pytest

from app.core.db import Database
from app.core.events import last_seq
from tests.factories import make_job

QUEUE_POOL_OVERFLOW = 10  # SQLAlchemy's default max_overflow: connections beyond the pool's size


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_stream_reads_while_requests_hold_every_pooled_connection(db: Database) -> None:
    """On SQLite the loop reads on a connection of its own: busy requests never stall the live streams."""
    with db.session() as session:
        job_id = make_job(session).id
    held = [db.engine.connect() for _ in range(db.engine.pool.size() + QUEUE_POOL_OVERFLOW)]
    try:
        # With the shared pool, this would wait for a free connection (30 s) and then fail.
        assert anyio.run(db.read, lambda connection: last_seq(connection, job_id)) == 1
    finally:
        for connection in held:
            connection.close()


def test_a_read_sees_what_was_committed(db: Database) -> None:
    with db.session() as session:
        job_id = make_job(session).id
    assert anyio.run(db.read, lambda connection: last_seq(connection, job_id)) == 1
    assert anyio.run(db.read, lambda connection: last_seq(connection, job_id + 1)) == 0
