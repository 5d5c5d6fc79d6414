"""The finops tables: schema ``finops`` on PostgreSQL, the main database on SQLite.

``tests/test_migrations.py`` compares models and migrations without schemas;
this is the comparison that sees the finops schema (and what that test needs
to become: ``include_schemas`` plus ``store.comparable_metadata``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select

from tenantops.db import Base, Database
from tenantops.finops.models import LedgerEntry
from tenantops.finops.store import comparable_metadata
from tenantops.migrations import alembic_config, upgrade


def test_models_and_migration_agree_including_the_finops_schema(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_schemas": True})
        diff = compare_metadata(context, comparable_metadata(Base.metadata, conn.dialect.name))
    assert diff == []


def test_postgresql_keeps_the_tables_in_schema_finops(db: Database) -> None:
    inspector = inspect(db.engine)
    if db.is_sqlite:
        assert "tenant_ledger" in inspector.get_table_names()
        return
    assert set(inspector.get_table_names(schema="finops")) == {
        "budgets",
        "cost_daily",
        "cost_imports",
        "cost_monthly",
        "tenant_ledger",
    }
    assert "tenant_ledger" not in inspector.get_table_names()


def test_the_migration_goes_down_and_up_again(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'down.db'}")
    upgrade(db.engine)
    command.downgrade(alembic_config(db.engine), "0004")
    assert "tenant_ledger" not in inspect(db.engine).get_table_names()
    upgrade(db.engine)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 0
    db.dispose()
