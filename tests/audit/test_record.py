"""Every change through the API writes exactly one entry that says who, what, where and when."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry, AuditHead
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.errors import AuditUnavailable
from tenantops.kit.clock import as_utc
from tests import flows
from tests.audit.helpers import count, entries
from tests.conftest import Actors, Headers
from tests.factories import tenant_body

Freeze = Callable[[datetime], None]
T0 = datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)

TENANT_FIELDS = {
    "name",
    "display_name",
    "business_owner",
    "compliance_classification",
    "region",
    "tier",
    "monthly_budget",
    "currency",
    "contacts",
    "ticket_ref",
    "state",
}


class Recorder:
    """Sends one request and returns it with the audit entries it wrote."""

    def __init__(self, db: Database, client: TestClient, freeze: Freeze) -> None:
        self.db, self.client, self.freeze = db, client, freeze
        self.n = 0

    def __call__(
        self, method: str, path: str, headers: Headers, json: Any = None
    ) -> tuple[Response, list[AuditEntry]]:
        self.n += 1
        self.at = T0 + timedelta(minutes=self.n)
        self.freeze(self.at)
        seen = count(self.db)
        r = self.client.request(method, f"/api/v1{path}", headers=headers, json=json)
        return r, entries(self.db)[seen:]


def the_one(
    r: Response,
    new: list[AuditEntry],
    *,
    status: int,
    actor: str,
    roles: list[str],
    action: str,
    tenant_id: str,
    at: datetime,
) -> AuditEntry:
    assert r.status_code == status, r.text
    assert len(new) == 1, [e.action for e in new]
    entry = new[0]
    assert entry.actor == actor
    assert entry.actor_roles == roles
    assert entry.action == action
    assert entry.tenant_id == tenant_id
    assert entry.request_id == r.headers["X-Request-ID"]
    assert as_utc(entry.at) == at
    return entry


def state_change(before: str, after: str) -> dict[str, Any]:
    return {"state": {"before": before, "after": after}}


def test_every_change_writes_one_entry_with_actor_roles_action_tenant_request_and_diff(
    db: Database, client: TestClient, actors: Actors, auth: Any, fake_clock: Freeze
) -> None:
    send = Recorder(db, client, fake_clock)
    # A principal with two roles: both are recorded, sorted.
    am = auth("ann", "finance", "account_manager")

    body = tenant_body(name="globex", monthly_budget=1234.5)
    r, new = send("POST", "/tenants", {**am, "X-Request-ID": "req-create-1"}, body)
    tid = r.json()["id"]
    e = the_one(
        r,
        new,
        status=201,
        actor="ann",
        roles=["account_manager", "finance"],
        action="tenant.requested",
        tenant_id=tid,
        at=send.at,
    )
    assert e.request_id == "req-create-1"
    assert set(e.changes) == TENANT_FIELDS
    assert all(change["before"] is None for change in e.changes.values())
    assert e.changes["name"]["after"] == "globex"
    assert e.changes["state"]["after"] == "requested"
    assert float(e.changes["monthly_budget"]["after"]) == 1234.5
    assert e.changes["contacts"]["after"] == ["ops@acme.example"]
    assert e.detail["ticket_ref"] == body["ticket_ref"]

    steps: list[tuple[str, str, Headers, Any, str, list[str], str, dict[str, Any]]] = [
        (
            f"/tenants/{tid}/approvals",
            "gus",
            actors.gov,
            {"role": "governance", "decision": "approve", "risk_ref": "RISK-7"},
            "tenant.approval.recorded",
            ["governance"],
            "requested",
            {},
        ),
        (
            f"/tenants/{tid}/approvals",
            "sue",
            actors.sec,
            {"role": "security", "decision": "approve"},
            "tenant.approved",
            ["security"],
            "approved",
            state_change("requested", "approved"),
        ),
        (
            "/tenants/globex/lifecycle-events",
            "oli",
            actors.ops,
            {"event": "start_provisioning"},
            "tenant.step.start_provisioning",
            ["ops_engineer"],
            "provisioning",
            state_change("approved", "provisioning"),
        ),
        (
            "/tenants/globex/lifecycle-events",
            "oli",
            actors.ops,
            {"event": "provisioned"},
            "tenant.step.provisioned",
            ["ops_engineer"],
            "verifying",
            state_change("provisioning", "verifying"),
        ),
        (
            "/tenants/globex/lifecycle-events",
            "quinn",
            actors.qa,
            {"event": "verified", "evidence_ref": "QA-1"},
            "tenant.step.verified",
            ["qa"],
            "active",
            state_change("verifying", "active"),
        ),
        (
            "/tenants/globex/suspend",
            "oli",
            actors.ops,
            {"reason": "payment breach", "incident_ref": "INC9"},
            "tenant.suspended",
            ["ops_engineer"],
            "suspended",
            state_change("active", "suspended"),
        ),
    ]
    for path, actor, headers, payload, action, roles, state, changes in steps:
        r, new = send("POST", path, headers, payload)
        e = the_one(
            r,
            new,
            status=200,
            actor=actor,
            roles=roles,
            action=action,
            tenant_id=tid,
            at=send.at,
        )
        assert r.json()["state"] == state
        assert e.changes == changes, action
    run_id = e.detail.pop("run_id")  # the suspension runbook started by this change
    assert run_id
    assert e.detail == {"reason": "payment breach", "incident_ref": "INC9"}

    r, new = send("POST", "/tenants/globex/reactivation-requests", am, {"reason": "paid"})
    e = the_one(
        r,
        new,
        status=201,
        actor="ann",
        roles=["account_manager", "finance"],
        action="tenant.reactivation.requested",
        tenant_id=tid,
        at=send.at,
    )
    assert e.changes == {}
    assert e.detail["reason"] == "paid"
    request_id = r.json()["id"]

    r, new = send(
        "POST",
        f"/tenants/globex/reactivation-requests/{request_id}/approvals",
        actors.gov,
        {"decision": "approve", "comment": "paid in full"},
    )
    e = the_one(
        r,
        new,
        status=200,
        actor="gus",
        roles=["governance"],
        action="tenant.reactivation.approved",
        tenant_id=tid,
        at=send.at,
    )
    assert e.changes == {}  # active only when the reactivation run has restored it
    assert e.detail["comment"] == "paid in full"
    assert e.detail["run_id"]
    assert flows.reactivated(db, tid) == "active"
    [e] = [x for x in entries(db) if x.tenant_id == tid][-1:]
    assert (e.action, e.actor, e.request_id) == (
        "tenant.reactivated",
        "system:runbook-engine",
        None,
    )
    assert e.changes == state_change("suspended", "active")
    assert e.detail["approval_request_id"] == request_id

    r, new = send("POST", "/tenants/globex/offboard", am, {"reason": "contract ended"})
    e = the_one(
        r,
        new,
        status=200,
        actor="ann",
        roles=["account_manager", "finance"],
        action="tenant.offboarding",
        tenant_id=tid,
        at=send.at,
    )
    assert e.changes == state_change("active", "offboarding")

    # Request ids are distinct per request and the chain is intact.
    ids = [x.request_id for x in entries(db) if x.tenant_id == tid and x.request_id]
    assert len(ids) == len(set(ids)) == 10
    with audit.snapshot(db) as session:
        assert audit.verify(session).ok


def test_a_rejection_writes_one_entry(
    db: Database, client: TestClient, actors: Actors, fake_clock: Freeze
) -> None:
    send = Recorder(db, client, fake_clock)
    r, _ = send("POST", "/tenants", actors.am, tenant_body())
    tid = r.json()["id"]
    r, new = send(
        "POST",
        f"/tenants/{tid}/approvals",
        actors.sec,
        {"role": "security", "decision": "reject", "comment": "no DPIA"},
    )
    e = the_one(
        r,
        new,
        status=200,
        actor="sue",
        roles=["security"],
        action="tenant.rejected",
        tenant_id=tid,
        at=send.at,
    )
    assert e.changes == state_change("requested", "rejected")
    assert e.detail["decision"] == "reject"


def test_reads_refusals_and_replays_write_nothing(
    db: Database, client: TestClient, actors: Actors, fake_clock: Freeze
) -> None:
    send = Recorder(db, client, fake_clock)
    body = tenant_body()
    key = {"Idempotency-Key": "k-1"}
    r, new = send("POST", "/tenants", {**actors.am, **key}, body)
    assert (r.status_code, len(new)) == (201, 1)
    tid = r.json()["id"]

    nothing = [
        send("POST", "/tenants", {**actors.am, **key}, body),  # replay: same tenant
        send("POST", "/tenants", {**actors.am, **key}, {**body, "tier": "premium"}),  # 422
        send("POST", "/tenants", actors.am, {**body, "name": body["name"]}),  # 409 name taken
        send("POST", "/tenants", actors.gov, tenant_body()),  # 403 role
        send("POST", "/tenants", {}, tenant_body()),  # 401
        send("POST", f"/tenants/{tid}/suspend", actors.ops, {"reason": "x"}),  # 409 state
        send(
            "POST",
            f"/tenants/{tid}/approvals",
            actors.am,
            {"role": "governance", "decision": "approve"},
        ),  # 403
        send("GET", f"/tenants/{tid}", actors.am),
        send("GET", "/tenants", actors.am),
        send("GET", "/audit", actors.auditor),
    ]
    statuses = [r.status_code for r, _ in nothing]
    assert statuses == [201, 422, 409, 403, 401, 409, 403, 200, 200, 200]
    assert nothing[0][0].headers["Idempotent-Replayed"] == "true"
    assert [len(new) for _, new in nothing] == [0] * len(nothing)


def test_time_is_stored_as_utc_whatever_zone_the_clock_reports(
    db: Database, fake_clock: Freeze
) -> None:
    """SQLite keeps only the wall time; an offset must not shift the instant or break the hash."""
    local = datetime(2031, 3, 4, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    fake_clock(local)
    with db.write() as session:
        audit.record(
            session,
            actor=Principal("zed", frozenset({Role.ADMIN})),
            action="test.clock",
            tenant_id=None,
            changes={},
        )
    [entry] = entries(db)
    assert as_utc(entry.at) == local
    assert as_utc(entry.at).utcoffset() == timedelta(0)
    with audit.snapshot(db) as session:
        assert audit.verify(session) == audit.VerifyResult(True, 1)


def test_several_entries_in_one_transaction_chain_in_order(db: Database) -> None:
    actor = Principal("zed", frozenset({Role.ADMIN}))
    with db.write() as session:
        for i in range(3):
            audit.record(session, actor=actor, action=f"test.{i}", tenant_id=None, changes={})
    assert [(e.seq, e.action) for e in entries(db)] == [(1, "test.0"), (2, "test.1"), (3, "test.2")]
    with audit.snapshot(db) as session:
        assert audit.verify(session) == audit.VerifyResult(True, 3)


def test_a_head_read_earlier_in_the_transaction_does_not_fork_the_chain(db: Database) -> None:
    """The locked read of the head must see what other writers committed meanwhile.

    On PostgreSQL a transaction that looked at the head before another writer
    committed still appends correctly. On SQLite writers hold the database from
    their first statement (``BEGIN IMMEDIATE``); a plain read transaction that
    was overtaken cannot write at all, and the audit fails closed.
    """
    actor = Principal("zed", frozenset({Role.ADMIN}))
    with db.sessions() as early:
        seen = early.get(AuditHead, 1)
        assert seen is not None
        assert seen.seq == 0
        with db.write() as other:
            audit.record(other, actor=actor, action="test.other", tenant_id=None, changes={})
        try:
            audit.record(early, actor=actor, action="test.early", tenant_id=None, changes={})
            early.commit()
            appended = True
        except AuditUnavailable:
            early.rollback()
            appended = False
    assert appended is not db.is_sqlite
    expected = ["test.other", "test.early"] if appended else ["test.other"]
    assert [e.action for e in entries(db)] == expected
    with audit.snapshot(db) as session:
        assert audit.verify(session) == audit.VerifyResult(True, len(expected))
