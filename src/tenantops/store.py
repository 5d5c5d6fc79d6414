"""Opening the configured database, checked against the migrations."""

from __future__ import annotations

from typing import Any

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.migrations import current_revision, head_revision, upgrade


def connect(settings: Settings, **engine_kwargs: Any) -> Database:
    """The configured database as it is, at whatever schema (the SQLite folder made first)."""
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Database(settings.resolved_database_url(), **engine_kwargs)


def open_database(settings: Settings, *, migrate_empty: bool = False) -> Database:
    """The database at the current schema.

    An empty database is migrated when ``migrate_empty`` (``serve``); one at an
    older revision is refused, so replicas never migrate behind each other's back.
    """
    db = connect(settings)
    current, head = current_revision(db.engine), head_revision(db.engine)
    if current == head:
        return db
    if current is None and migrate_empty:
        upgrade(db.engine)
        return db
    db.dispose()
    if current is None:
        raise Unprocessable("the database has no tenantops schema yet; run: tenantops db upgrade")
    raise Unprocessable(
        f"the database schema is at {current}, this version needs {head}; run: tenantops db upgrade"
    )
