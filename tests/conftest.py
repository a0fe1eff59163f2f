"""Shared fixtures: a real Redis, real databases (a SQLite file and PostgreSQL), clean for every test.

Settings are read from the environment and cached; `configure` sets the environment for a test
and clears every cache so the code under test sees it.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import insert, make_url

from app.core import migrate
from app.core.db import Base, Database
from app.models import SchedulerState

# Test stacks start many workers that train a job or two at most; a spare trainer process for each would
# cost seconds of CPU apiece (a third more suite time on 2 cores). The stacks that test it turn it on
# (the training end-to-end and fault-injection stacks, the runner's tests); processes inherit this.
os.environ.setdefault("TRAINYARD_WARM_TRAINER", "false")
REDIS_URL = os.environ.get("TRAINYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
PG_ADMIN_URL = os.environ.get("TRAINYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def clear_caches() -> None:
    from app.core.db import get_database
    from app.core.redis import get_redis
    from app.core.settings import get_settings
    from app.core.storage import get_storage
    from app.core.tasks import get_celery_client

    for cached in (get_settings, get_database, get_redis, get_storage, get_celery_client):
        cached.cache_clear()


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trainyard")
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(path / "ultralytics")
    os.environ["MPLCONFIGDIR"] = str(path / "matplotlib")
    return path


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    client.flushdb()
    yield client
    client.flushdb()


@contextmanager
def fresh_postgres(prefix: str, migrated: bool = True) -> Iterator[str]:
    """A new PostgreSQL database (migrated to head unless told otherwise), dropped afterwards."""
    name = f"trainyard_{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    rendered = url.render_as_string(hide_password=False)
    try:
        if migrated:
            migrate.upgrade(rendered)
        yield rendered
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def stack_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of a module's process stack's own: no database shared with other tests or runs."""
    from tests.support.fleet import own_redis

    with own_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped at the end."""
    with fresh_postgres("test") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(session_dir: Path) -> str:
    url = f"sqlite:///{session_dir / 'trainyard.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    session_dir: Path,
    database_url: str,
    redis_client: redis.Redis,
) -> Iterator[Path]:
    """The environment of one test: its own data dir, the given database, the test Redis; datasets
    anywhere under pytest's temporary folder may be imported."""
    monkeypatch.setenv("TRAINYARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("TRAINYARD_IMPORT_ROOTS", str(tmp_path_factory.getbasetemp()))
    clear_caches()
    yield tmp_path
    clear_caches()


@pytest.fixture
def db(env: Path, database_url: str, redis_client: redis.Redis) -> Iterator[Database]:
    from app.inference.recent_models import recent_models

    database = Database(database_url)
    _truncate(database)
    recent_models.forget_all()  # ids start over: nothing resolved against the last test's rows
    redis_client.flushdb()
    yield database
    database.dispose()


def _truncate(database: Database) -> None:
    """Every row gone but those the migrations seed (the scheduling mutex, app/scheduling/service.py)."""
    with database.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        conn.execute(insert(SchedulerState).values(id=1, decisions=0))


def make_api_key(
    db: Database, role: str = "admin", projects: list[str] | None = None, all_projects: bool = False
) -> str:
    """A new API key (as `trainyard keys create` makes it); projects are created when missing."""
    from app.keys.service import create_key
    from app.models import Role

    with db.session() as session:
        _key, token, _ = create_key(session, Role(role), projects or [], all_projects=all_projects)
    return token


def bearer_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def admin_key(db: Database) -> str:
    return make_api_key(db)


@pytest.fixture
def admin_headers(admin_key: str) -> dict[str, str]:
    return bearer_headers(admin_key)
