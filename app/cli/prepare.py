"""The database side of starting up: migrations saying one line, and the first admin key on a database
that has none (`trainyard db upgrade`, and `trainyard db prepare`, which `trainyard serve` runs)."""

import logging

from app.core import migrate

log = logging.getLogger("app.backend")


def migrate_quietly(database_url: str, revision: str = "head") -> None:
    """Apply migrations, saying one line (Alembic's own records are quieted in app/core/logging.py)."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    try:
        migrate.upgrade(database_url, revision)
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    log.info("database ready (migration %s): %s", current, engine.url.render_as_string(hide_password=True))


def first_admin_key(database_url: str) -> str | None:
    """On a database without any key, make an admin key (shown once, in the banner); else None."""
    from app.core.db import Database
    from app.keys import service
    from app.models import Role

    db = Database(database_url)
    try:
        with db.session() as session:
            if service.has_keys(session):
                return None
            _key, token, _ = service.create_key(session, Role.ADMIN, [], name="first admin key")
    finally:
        db.dispose()
    log.info("created the first admin API key (shown once, below)")
    return str(token)
