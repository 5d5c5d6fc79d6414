"""Revisions 0013 and 0014 go down and back on both stores, keeping what they hold."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, select, text

from tenantops.db import Database
from tenantops.drivers.secrets.local import LocalSecrets
from tenantops.drivers.secrets.port import PathSpec
from tenantops.kit.clock import as_utc
from tenantops.migrations import alembic_config, current_revision, head_revision, upgrade
from tenantops.secrets import service
from tenantops.secrets.models import SecretEntry
from tests.conftest import STORES, Clock, create_pg_database, drop_pg_database


@pytest.fixture(params=STORES)
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database of each store, migrated to head."""
    url = f"sqlite:///{tmp_path / 'm.db'}" if request.param == "sqlite" else create_pg_database()
    db = Database(url)
    upgrade(db.engine)
    yield db
    db.dispose()
    if request.param != "sqlite":
        drop_pg_database(url)


def test_down_to_0012_and_back_keeps_the_local_store(fresh: Database, clock: Clock) -> None:
    LocalSecrets(fresh).create_store(
        tenant_id="t1", tenant_name="acme", paths=[PathSpec("app/database")], idempotency_key="c"
    )

    command.downgrade(alembic_config(fresh.engine), "0012")
    assert current_revision(fresh.engine) == "0012"
    schema = inspect(fresh.engine)
    assert "secret_inventory" not in schema.get_table_names()
    assert "rotated_at" not in {c["name"] for c in schema.get_columns("secret_paths")}

    upgrade(fresh.engine)
    assert current_revision(fresh.engine) == head_revision(fresh.engine)
    state = LocalSecrets(fresh).get_store(tenant_id="t1")
    assert state is not None
    # A path from before rotation was tracked counts from when it was created.
    assert [(p.path, p.version, p.rotated_at) for p in state.paths] == [
        ("tenants/acme/app/database", 1, clock.now)
    ]


def test_0014_fills_when_existing_entries_become_due_soon(fresh: Database) -> None:
    command.downgrade(alembic_config(fresh.engine), "0013")
    due = datetime(2030, 3, 1, 9, tzinfo=UTC)
    columns = "tenant_id, path, tenant_name, rotation_days, store_status, last_rotated_at, "
    columns += "next_due_at, first_seen_at, updated_at"
    with fresh.engine.begin() as conn:
        for path, days in (("app/monthly", 30), ("app/daily", 1), ("app/yearly", 365)):
            conn.execute(
                text(
                    f"INSERT INTO secret_inventory ({columns}) VALUES "
                    "('t1', :path, 'acme', :days, 'active', :at, :due, :at, :at)"
                ),
                {"path": path, "days": days, "at": due - timedelta(days=days), "due": due},
            )

    upgrade(fresh.engine)

    with fresh.read() as session:
        rows = {r.path: r for r in session.scalars(select(SecretEntry))}
        soon = {path: due - as_utc(r.due_soon_at) for path, r in rows.items()}
        assert soon == {
            "app/monthly": timedelta(days=7),
            "app/daily": timedelta(days=1),
            "app/yearly": timedelta(days=14),
        }
        assert {r.store_revoked_at for r in rows.values()} == {None}
        assert service.status_of(rows["app/monthly"], due - timedelta(days=7)) == "due_soon"
    command.downgrade(alembic_config(fresh.engine), "0013")
    assert "due_soon_at" not in {
        c["name"] for c in inspect(fresh.engine).get_columns("secret_inventory")
    }
