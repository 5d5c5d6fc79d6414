"""Revision 0013 goes down to 0012 and back on both stores, keeping the local store's paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from tenantops.db import Database
from tenantops.drivers.secrets.local import LocalSecrets
from tenantops.drivers.secrets.port import PathSpec
from tenantops.migrations import alembic_config, current_revision, head_revision, upgrade
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
