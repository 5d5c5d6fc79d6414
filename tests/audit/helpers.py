"""Reading the audit trail straight from the store, and driving tenants through the API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from tenantops.audit.models import AuditEntry, AuditHead
from tenantops.db import Database
from tests.factories import tenant_body

Headers = dict[str, str]


def entries(db: Database) -> list[AuditEntry]:
    """Every stored entry, by seq."""
    with db.read() as session:
        return list(session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars())


def count(db: Database) -> int:
    with db.read() as session:
        return session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()


def head(db: Database) -> tuple[int, str]:
    with db.read() as session:
        row = session.get(AuditHead, 1)
        assert row is not None
        return row.seq, row.hash


def request_tenant(client: TestClient, headers: Headers, **overrides: Any) -> dict[str, Any]:
    r = client.post("/api/v1/tenants", json=tenant_body(**overrides), headers=headers)
    assert r.status_code == 201, r.text
    tenant: dict[str, Any] = r.json()
    return tenant


def approve(client: TestClient, tenant: str, headers: Headers, role: str) -> dict[str, Any]:
    r = client.post(
        f"/api/v1/tenants/{tenant}/approvals",
        json={"role": role, "decision": "approve"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def step(client: TestClient, tenant: str, event: str, headers: Headers) -> dict[str, Any]:
    r = client.post(
        f"/api/v1/tenants/{tenant}/lifecycle-events", json={"event": event}, headers=headers
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


FAIL_MESSAGE = "audit store refuses writes (test trigger)"


@contextmanager
def failing_audit(db: Database) -> Iterator[None]:
    """Inside the block every insert into the audit log fails in the database itself."""
    if db.is_sqlite:
        create = [
            "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_log "
            f"BEGIN SELECT RAISE(ABORT, '{FAIL_MESSAGE}'); END"
        ]
        drop = ["DROP TRIGGER IF EXISTS audit_refuse"]
    else:
        create = [
            "CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{FAIL_MESSAGE}'; END $$",
            "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
        ]
        drop = [
            "DROP TRIGGER IF EXISTS audit_refuse ON audit_log",
            "DROP FUNCTION IF EXISTS audit_refuse()",
        ]
    with db.engine.begin() as conn:
        for statement in create:
            conn.execute(text(statement))
    try:
        yield
    finally:
        with db.engine.begin() as conn:
            for statement in drop:
                conn.execute(text(statement))
