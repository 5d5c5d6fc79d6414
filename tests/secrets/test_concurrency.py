"""Registering a new secret while others register it too, or the check inserts it, on real
PostgreSQL (and SQLite): one row, no error. A row lock cannot hold a row that is not there
yet, so every change to a tenant's entries takes the tenant's advisory lock first."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.drivers.secrets.local import LocalSecrets
from tenantops.drivers.secrets.port import PathSpec
from tenantops.secrets import service
from tenantops.secrets.models import SecretEntry
from tests.conftest import Actors, Clock
from tests.flows import request_tenant

REGISTRARS = 4
REFRESHERS = 4


def test_concurrent_registrations_and_refreshes_of_a_new_secret_make_one_row(
    client: TestClient, actors: Actors, db: Database, clock: Clock
) -> None:
    tenant = request_tenant(client, actors.am, name="acme")
    LocalSecrets(db).create_store(
        tenant_id=tenant["id"],
        tenant_name="acme",
        paths=[PathSpec("app/new")],
        idempotency_key="store",
    )
    state = LocalSecrets(db).get_store(tenant_id=tenant["id"])
    barrier = threading.Barrier(REGISTRARS + REFRESHERS)
    errors: list[BaseException] = []

    def register(n: int) -> None:
        who = Principal(f"ops-{n}", frozenset({Role.OPS_ENGINEER}))
        try:
            barrier.wait()
            with db.write() as session:
                service.register_secret(
                    session,
                    principal=who,
                    tenant_ref="acme",
                    path="app/new",
                    owner=f"team-{n}@acme.example",
                    purpose=None,
                    rotation_days=30,
                )
        except BaseException as exc:
            errors.append(exc)

    def refresh() -> None:
        try:
            barrier.wait()
            with db.write() as session:
                service.refresh_tenant(
                    session, tenant_id=tenant["id"], tenant_name="acme", state=state
                )
        except BaseException as exc:
            errors.append(exc)

    threads: list[threading.Thread] = [
        threading.Thread(target=register, args=(n,)) for n in range(REGISTRARS)
    ]
    threads += [threading.Thread(target=refresh) for _ in range(REFRESHERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert errors == []
    with db.read() as session:
        rows: list[Any] = list(session.scalars(select(SecretEntry)))
        assert len(rows) == 1
        (row,) = rows
        assert (row.path, row.store_status, row.rotation_days) == ("app/new", "active", 30)
        assert row.registered_by is not None
        registrations = session.scalar(
            select(func.count()).where(AuditEntry.action == "secret.registered")
        )
        assert registrations == REGISTRARS  # each one recorded, none lost
        assert audit.verify(session).ok
