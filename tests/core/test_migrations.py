"""Migrations run forward and back on both databases."""

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from app.core import migrate
from tests.conftest import fresh_postgres

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
    with fresh_postgres("mig", migrated=False) as url:
        _roundtrip(url)
