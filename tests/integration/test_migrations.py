"""Migrations run forward and back on both databases."""

import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, inspect, make_url

from app.core import migrate
from tests.conftest import PG_ADMIN_URL

pytestmark = pytest.mark.integration

TABLES = {
    "projects",
    "training_jobs",
    "job_events",
    "training_logs",
    "datasets",
    "dataset_versions",
    "api_keys",
    "api_key_projects",
}


def _roundtrip(url: str) -> None:
    migrate.upgrade(url)
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    migrate.downgrade(url, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    migrate.upgrade(url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_sqlite_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    _roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


def test_postgres_upgrade_downgrade_upgrade() -> None:
    name = f"trainyard_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
        _roundtrip(url.render_as_string(hide_password=False))
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
