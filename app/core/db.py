"""Engine and sessions. The request (or task) that opens a session commits it; services only flush.

Side effects that must not happen unless the transaction lands (publishing an event, sending a
Celery command) are queued with `on_commit` and run right after the commit, or dropped on rollback.
"""

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction, sessionmaker

from app.core.settings import get_settings

log = logging.getLogger("app.backend")
BUSY_SECONDS = 30  # how long a writer waits for another one before "database is locked"
READ_ONLY = "trainyard_read_only"  # execution option of `Database.reading`'s connections


class Base(DeclarativeBase):
    pass


_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


class SerializedWriters(sqlite3.Connection):
    """A SQLite connection whose write transactions queue on one lock per file in this process.

    Only one transaction writes a SQLite file at a time anyway. Waiting for it on SQLite's busy handler
    means sleeping in steps of up to 100 ms and trying again, so with a few threads writing most of the
    time went to sleeping while the file was free; a lock hands it over at once. Other processes (workers,
    the scheduler) still meet at SQLite's own lock, with its busy timeout.
    """

    def __init__(self, database: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        with _write_locks_guard:
            self.write_lock = _write_locks.setdefault(str(database), threading.Lock())
        self.holds_write_lock = False

    def take_write_lock(self) -> None:
        if not self.write_lock.acquire(timeout=BUSY_SECONDS):
            raise sqlite3.OperationalError("database is locked (by another writer of this process)")
        self.holds_write_lock = True

    def release_write_lock(self) -> None:
        """After a BEGIN that failed; a transaction that began gives the lock back when it ends."""
        self._release()

    def _release(self, closed: bool = False) -> None:
        # A COMMIT that failed leaves the transaction open: it still holds the lock until its rollback.
        if self.holds_write_lock and (closed or not self.in_transaction):
            self.holds_write_lock = False
            self.write_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release(closed=True)


def make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        # Our transactions are short. A client frozen mid-transaction (a paused VM, SIGSTOP) must not
        # hold a job's row lock forever: the server ends such sessions, and nobody waits for long.
        options = "-c idle_in_transaction_session_timeout=15000 -c lock_timeout=15000"
        return create_engine(url, pool_pre_ping=True, connect_args={"options": options})
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": BUSY_SECONDS, "factory": SerializedWriters},
    )

    # API, workers and beat share one SQLite file. WAL lets readers run beside the writer, and
    # BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
    # writes fails at once (no busy wait) when another process committed in between.
    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # A reader needs no lock at all: WAL gives it a snapshot at its first read while the writer
            # goes on. Taking the write lock to read made a stream's read wait for (and hold up) every
            # write of the other processes, hundreds of milliseconds while a worker reports in a burst.
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_conn = conn.connection.dbapi_connection
        dbapi_conn.take_write_lock()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            dbapi_conn.release_write_lock()
            raise

    return engine


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self.reader = self.engine.execution_options(**{READ_ONLY: True})

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back when it raises."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection that only reads, in one transaction rolled back at the end; on SQLite without the
        write lock, so it neither waits for writers nor holds them up. For hot reads that need no ORM
        objects (an SSE feed reads after every event)."""
        with self.reader.connect() as connection:
            yield connection

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """`reading` for code written against ORM sessions (a request that only looks things up): no
        write lock on SQLite, nothing committed."""
        with self.reading() as connection, Session(connection) as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


@lru_cache
def get_database() -> Database:
    return Database(get_settings().resolved_database_url)


def on_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's transaction commits; forget it on rollback."""
    session.info.setdefault("on_commit", []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_on_commit(session: Session) -> None:
    for callback in session.info.pop("on_commit", []):
        try:
            callback()
        except Exception:
            # The data is committed; a lost notification is repaired by replay from the database.
            log.exception("after-commit callback failed")


def on_rollback(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` if the session's transaction rolls back (undo files written for it); forget it on
    commit. A session closed without either (never committed) counts as rolled back."""
    session.info.setdefault("on_rollback", []).append(callback)


@event.listens_for(Session, "after_commit")
def _drop_on_rollback(session: Session) -> None:
    session.info.pop("on_rollback", None)


@event.listens_for(Session, "after_transaction_end")
def _run_on_rollback(session: Session, transaction: SessionTransaction) -> None:
    # Only the outermost transaction decides (a SAVEPOINT rolling back is not the unit of work failing);
    # a commit already popped the callbacks, so whatever is left here belongs to a rollback.
    if transaction.parent is not None:
        return
    session.info.pop("on_commit", None)
    for callback in session.info.pop("on_rollback", []):
        try:
            callback()
        except Exception:
            log.exception("after-rollback callback failed")
