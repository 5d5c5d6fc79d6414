"""Alembic migrations (run on SQLite and PostgreSQL alike) and the code that applies them."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

HERE = Path(__file__).parent


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind ``engine`` to ``revision``."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(bind: Engine | Connection) -> str | None:
    """The revision the database is at (None: no schema); a connection reads in its transaction."""
    if isinstance(bind, Connection):
        return MigrationContext.configure(bind).get_current_revision()
    with bind.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def known_revisions(engine: Engine) -> set[str]:
    """Every revision these migrations define."""
    scripts = ScriptDirectory.from_config(alembic_config(engine))
    return {r.revision for r in scripts.walk_revisions()}


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
