"""A fresh, empty database for one benchmark run (SQLite file or PostgreSQL on 127.0.0.1)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def make_store(kind: str, tmp: Path | None = None) -> tuple[str, Callable[[], None]]:
    """The URL of a new database of ``kind`` (``sqlite`` in ``tmp``, else ``postgres``),
    and the function that drops it."""
    if kind == "sqlite":
        where = tmp or Path(tempfile.mkdtemp())
        return f"sqlite:///{where / ('tenantops.db' if tmp else 'bench.db')}", lambda: None
    name = f"tenantops_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False), drop
