"""Fail-closed: when the database refuses the audit entry, the change does not happen.

The audit insert is made to fail for real, by a trigger in the store, so the
whole path — ORM flush, driver error, rollback, 503 problem — is the one
production would take.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from tenantops.approvals.models import ApprovalDecision, ApprovalRequest
from tenantops.auth.models import ApiToken
from tenantops.auth.tokens import TOKEN_PREFIX
from tenantops.db import Database
from tenantops.logs import configure_logging
from tenantops.tenants.models import IdempotencyRecord, Tenant
from tests.audit.conftest import ActiveTenant
from tests.audit.helpers import FAIL_MESSAGE, count, failing_audit, head
from tests.conftest import Actors, CliRunner
from tests.factories import tenant_body
from tests.flows import approve, request_tenant


def assert_audit_unavailable(r: Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 503
    assert problem["type"].endswith("/audit-unavailable")
    assert "not made" in problem["title"] + problem["detail"]
    # The database's own message stays in the server log, not in the answer.
    assert FAIL_MESSAGE not in r.text


def rows(db: Database, model: Any) -> int:
    with db.read() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def tenant_row(db: Database, tenant_id: str) -> Tenant:
    with db.read() as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        return tenant


def test_request_is_refused_and_leaves_no_tenant_no_approval_no_idempotency_key(
    db: Database, client: TestClient, actors: Actors
) -> None:
    body = tenant_body(name="ghost")
    key = {"Idempotency-Key": "create-ghost-1"}
    trail_before = count(db), head(db)

    with failing_audit(db):
        r = client.post("/api/v1/tenants", json=body, headers={**actors.am, **key})
        assert_audit_unavailable(r)

    assert rows(db, Tenant) == 0
    assert rows(db, ApprovalRequest) == 0
    assert rows(db, IdempotencyRecord) == 0
    assert (count(db), head(db)) == trail_before
    assert client.get("/api/v1/tenants/ghost", headers=actors.am).status_code == 404

    # With the audit store back, the same key creates the tenant afresh: the
    # refused attempt left no idempotency record to replay.
    r = client.post("/api/v1/tenants", json=body, headers={**actors.am, **key})
    assert r.status_code == 201, r.text
    assert "Idempotent-Replayed" not in r.headers
    assert r.json()["state"] == "requested"


def test_approval_is_refused_and_records_no_decision(
    db: Database, client: TestClient, actors: Actors
) -> None:
    tenant = request_tenant(client, actors.am)
    tid = tenant["id"]
    approve(client, tid, "governance", actors.gov)
    before = tenant_row(db, tid)
    trail_before = count(db), head(db)

    with failing_audit(db):
        # The second approval would move the tenant to approved.
        r = client.post(
            f"/api/v1/tenants/{tid}/approvals",
            json={"role": "security", "decision": "approve"},
            headers=actors.sec,
        )
        assert_audit_unavailable(r)
        # A request refused for its own reason still gets that reason, not a 503.
        r = client.post(
            f"/api/v1/tenants/{tid}/approvals",
            json={"role": "governance", "decision": "reject"},
            headers=actors.gov,
        )
        assert r.status_code == 409, r.text  # governance has already decided

    after = tenant_row(db, tid)
    assert (after.state, after.version, after.updated_at) == (
        "requested",
        before.version,
        before.updated_at,
    )
    with db.read() as session:
        decisions = session.execute(select(ApprovalDecision.role)).scalars().all()
        statuses = session.execute(select(ApprovalRequest.status)).scalars().all()
    assert decisions == ["governance"]
    assert statuses == ["pending"]
    assert (count(db), head(db)) == trail_before

    # Nothing half-done blocks the retry once the audit store is back.
    assert approve(client, tid, "security", actors.sec)["state"] == "approved"


def test_first_approval_is_refused_and_records_no_decision(
    db: Database, client: TestClient, actors: Actors
) -> None:
    tid = request_tenant(client, actors.am)["id"]
    version = tenant_row(db, tid).version

    with failing_audit(db):
        r = client.post(
            f"/api/v1/tenants/{tid}/approvals",
            json={"role": "governance", "decision": "approve", "risk_ref": "RISK-9"},
            headers=actors.gov,
        )
        assert_audit_unavailable(r)

    assert rows(db, ApprovalDecision) == 0
    assert tenant_row(db, tid).version == version
    listed = client.get(f"/api/v1/tenants/{tid}/approvals", headers=actors.gov).json()
    assert [req["decisions"] for req in listed] == [[]]


def test_suspend_is_refused_and_the_tenant_stays_active(
    db: Database, client: TestClient, actors: Actors, active_tenant: ActiveTenant
) -> None:
    tenant = active_tenant()
    before = tenant_row(db, tenant["id"])
    trail_before = count(db), head(db)

    with failing_audit(db):
        r = client.post(
            f"/api/v1/tenants/{tenant['id']}/suspend",
            json={"reason": "payment breach", "incident_ref": "INC7"},
            headers={**actors.ops, "If-Match": f'"{before.version}"'},
        )
        assert_audit_unavailable(r)

    after = tenant_row(db, tenant["id"])
    assert (after.state, after.version) == ("active", before.version)
    assert (count(db), head(db)) == trail_before
    r = client.get(f"/api/v1/tenants/{tenant['id']}", headers=actors.ops)
    assert r.json()["state"] == "active"
    assert r.headers["ETag"] == f'"{before.version}"'


def test_token_is_not_issued_when_its_creation_cannot_be_audited(
    db: Database, cli: CliRunner
) -> None:
    with failing_audit(db):
        result = cli("tokens", "create", "--subject", "bot", "--role", "admin")

    assert result.code != 0
    # No token value printed for a token that does not exist. (stdout is not
    # asserted empty: the CLI leaves structlog at its default, which logs to stdout.)
    assert TOKEN_PREFIX not in result.out
    assert result.err.startswith("error: ")
    assert len(result.err.strip().splitlines()) == 1
    assert rows(db, ApiToken) == 0


def test_refusal_is_logged_for_the_operator(
    db: Database, client: TestClient, actors: Actors, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json=True)
    try:
        with failing_audit(db):
            r = client.post(
                "/api/v1/tenants",
                json=tenant_body(),
                headers={**actors.am, "X-Request-ID": "r-503"},
            )
    finally:
        structlog.reset_defaults()
    assert_audit_unavailable(r)
    err = capsys.readouterr().err
    refusal = [line for line in err.splitlines() if "audit entry not written" in line]
    assert len(refusal) == 1, err
    assert "tenant.requested" in refusal[0]
    assert "r-503" in refusal[0]
    assert FAIL_MESSAGE in refusal[0]
