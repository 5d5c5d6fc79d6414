"""The inventory fed by the Vault adapter, against the replayed Vault API contract:
owner, purpose and cycle from ``custom_metadata``, the last rotation from the current
version's ``created_time``; never a call to ``<mount>/data/``."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from tenantops.db import Database
from tenantops.drivers.secrets.port import PathSpec
from tenantops.drivers.secrets.vault import VaultSecretStore
from tenantops.kit.ids import new_id
from tenantops.secrets import service
from tenantops.secrets.models import SecretEntry
from tenantops.secrets.service import RotationStatus
from tests.conftest import Clock
from tests.drivers.test_secrets_contract import Vault, make, vault, vs  # noqa: F401 (fixtures)


def test_vault_metadata_and_versions_make_the_inventory(
    db: Database,
    vault: Vault,  # noqa: F811
    vs: VaultSecretStore,  # noqa: F811
    clock: Clock,
) -> None:
    tid = new_id()
    vs.create_store(
        tenant_id=tid,
        tenant_name="acme",
        paths=[
            PathSpec(
                "app/database",
                {"owner": "team-db@acme.example", "purpose": "orders db", "rotation_days": "60"},
            ),
            PathSpec("app/queue", {"rotation_days": "forever"}),
        ],
        idempotency_key="c",
    )
    # Its owner last wrote the database secret 70 days ago: 10 days past its 60-day cycle.
    vault.versions["tenants/acme/app/database"] = {3: "2029-10-23T09:00:00.000000001Z"}

    with db.write() as session:
        paths = service.refresh_tenant(
            session, tenant_id=tid, tenant_name="acme", state=vs.get_store(tenant_id=tid)
        )
        summary = service.check_due(session, actor="system:test")
    with db.read() as session:
        rows = {r.path: r for r in session.scalars(select(SecretEntry))}

    assert paths == 2
    database, queue = rows["app/database"], rows["app/queue"]
    assert (database.owner, database.purpose, database.rotation_days) == (
        "team-db@acme.example",
        "orders db",
        60,
    )
    assert service.as_utc(database.last_rotated_at) == datetime(2029, 10, 23, 9, tzinfo=UTC)
    assert service.status_of(database, clock.now) == RotationStatus.OVERDUE
    # No value written yet: it counts from when the inventory first saw it; a cycle that is
    # not a number of days is the default.
    assert service.as_utc(queue.last_rotated_at) == clock.now
    assert queue.rotation_days == service.DEFAULT_CYCLE_DAYS
    assert (summary.overdue, summary.announced) == (1, 1)
    assert not [c for c in vault.calls() if "/data/" in c[1]]
