"""The Access Review checklist: started over the API, completed by security, kept in the audit."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import SYSTEM, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import identity_provider
from tenantops.drivers.identity.port import Grant, Permission
from tenantops.runbooks import engine
from tenantops.runbooks.worker import Worker
from tenantops.web import service as web
from tenantops.wiring import build_actions
from tests.conftest import Clock, TokenFactory, invoke
from tests.finops.focusdata import make_tenant
from tests.finops.test_reports import Server, server  # noqa: F401 (fixture)
from tests.flows import drain, ok
from tests.servers import mint_token

OWNER = "owner@acme.example"  # the factory's business owner


def decide(client: TestClient, who: dict[str, str], run_id: str, step: str, comment: str) -> Any:
    return client.post(
        f"/api/v1/runs/{run_id}/gates/{step}",
        json={"decision": "approve", "comment": comment},
        headers=who,
    )


@pytest.fixture
def blue(db: Database, settings: Settings, clock: Clock) -> str:
    """Tenant blue: a group (its owner, its contact, and mallory whom the record does not name),
    a bound API token and a bound web user."""
    with db.write() as session:
        tenant_id = make_tenant(session, "blue")
        web.create_user(
            session,
            actor=SYSTEM,
            username="blue-viewer",
            password="a long enough password 1",
            roles=[Role.TENANT_OWNER],
            tenant_id=tenant_id,
        )
    identity = identity_provider(settings, db)
    identity.create_group(
        tenant_id=tenant_id,
        tenant_name="blue",
        grants=[Grant(OWNER, Permission.WRITE), Grant("ops@acme.example", Permission.READ)],
        idempotency_key="setup/group",
    )
    identity.add_member(
        tenant_id=tenant_id,
        grant=Grant("mallory@example.com", Permission.READ),
        idempotency_key="setup/mallory",
    )
    mint_token(db, "blue-ci", "tenant_owner", tenant=tenant_id)
    return tenant_id


def test_security_completes_the_review_and_the_decision_is_audited(
    client: TestClient,
    auth: TokenFactory,
    db: Database,
    settings: Settings,
    blue: str,
) -> None:
    starter = auth("sam", "security")
    reviewer = auth("sue", "security")
    ops = auth("oli", "ops_engineer")
    ok(
        client.post(
            "/api/v1/break-glass",
            json={
                "reason": "database is down, need admin",
                "incident_ref": "INC7",
                "tenant": "blue",
            },
            headers=ops,
        ),
        201,
    )
    worker = Worker(db, build_actions(settings, db))
    run = ok(
        client.post(
            "/api/v1/tenants/blue/access-reviews", json={"reason": "quarterly"}, headers=starter
        ),
        201,
    )
    run_id = run["id"]
    assert (run["runbook_id"], run["inputs"]["reason"]) == ("access-review", "quarterly")

    drain(worker)
    waiting = ok(client.get(f"/api/v1/runs/{run_id}", headers=reviewer))
    assert (waiting["status"], waiting["current_step"]) == ("waiting", "confirm-members")
    steps = {s["name"]: s for s in waiting["steps"]}
    evidence = steps["snapshot"]["evidence"]
    assert evidence["members"] == 3
    assert evidence["tokens_active"] == 2  # blue-ci and the break-glass token
    assert evidence["users_enabled"] == 1
    assert evidence["break_glass_open"] == 1
    assert "mallory@example.com holds read but is neither owner nor contact" in evidence["findings"]
    assert len(evidence["digest"]) == 64
    with db.read() as session:
        snapshot = next(s for s in engine.steps_of(session, run_id) if s.name == "snapshot").output
    assert snapshot is not None
    members = {m["subject"]: m for m in snapshot["members"]}
    assert members[OWNER] == {
        "subject": OWNER,
        "permission": "write",
        "as": "owner",
        "state": "enabled",
    }
    assert members["ops@acme.example"]["as"] == "contact"
    assert members["mallory@example.com"]["as"] == "unexpected"
    assert {t["subject"] for t in snapshot["tokens"]} == {"blue-ci", "breakglass:oli"}
    # No secret: a token appears by its prefix only.
    assert all(
        set(t) >= {"prefix"} and "tnp_" not in str(t.get("value")) for t in snapshot["tokens"]
    )
    assert "token_hash" not in str(snapshot)
    assert snapshot["users"][0]["username"] == "blue-viewer"
    assert snapshot["break_glass"][0]["incident_ref"] == "INC7"
    notes = ok(client.get("/api/v1/notifications", headers=auth("root", "admin")))["items"]
    mine = [n for n in notes if n["run_id"] == run_id]
    assert any(n["subject"].startswith("[Security] Access review due: blue") for n in mine)
    assert any(n["subject"] == "Access review of your tenant blue" for n in mine)

    # Not security: refused at the gate; the starter: refused too (segregation of duties).
    assert decide(client, ops, run_id, "confirm-members", "fine").status_code == 403
    assert decide(client, starter, run_id, "confirm-members", "mine").status_code == 403
    ok(decide(client, reviewer, run_id, "confirm-members", "mallory left in March"))
    ok(decide(client, reviewer, run_id, "confirm-tokens", "blue-ci is the deploy bot"))
    ok(decide(client, reviewer, run_id, "decide", "revoke mallory@example.com: left"))
    drain(worker)
    done = ok(client.get(f"/api/v1/runs/{run_id}", headers=reviewer))
    assert done["status"] == "succeeded"

    with db.read() as session:
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "access_review.recorded")
        ).scalar_one()
        gate_audits = [
            a
            for a in session.execute(
                select(AuditEntry)
                .where(AuditEntry.action == "run.gate.signal")
                .order_by(AuditEntry.seq)
            ).scalars()
            if a.detail["run_id"] == run_id
        ]
        assert audit.verify(session).ok
    assert (entry.tenant_id, entry.actor) == (blue, "sue")
    assert entry.detail["outcome"] == "revoke"
    assert entry.detail["decision"] == "revoke mallory@example.com: left"
    assert entry.detail["snapshot_digest"] == evidence["digest"]
    assert entry.detail["counts"]["members"] == 3
    assert set(entry.detail["gates"]) == {"confirm-members", "confirm-tokens", "decide"}
    assert [(a.actor, a.detail["step"]) for a in gate_audits] == [
        ("sue", "confirm-members"),
        ("sue", "confirm-tokens"),
        ("sue", "decide"),
    ]


def test_who_may_start_a_review_and_only_one_at_a_time(
    client: TestClient, auth: TokenFactory, blue: str
) -> None:
    for role in ("finance", "ops_engineer", "auditor"):
        refused = client.post(
            "/api/v1/tenants/blue/access-reviews", json={}, headers=auth("x", role)
        )
        assert refused.status_code == 403, role
    first = ok(
        client.post("/api/v1/tenants/blue/access-reviews", headers=auth("gus", "governance")),
        201,
    )
    again = client.post(
        "/api/v1/tenants/blue/access-reviews", json={}, headers=auth("sue", "security")
    )
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert first["id"] in again.json()["detail"]
    missing = client.post("/api/v1/tenants/nobody/access-reviews", headers=auth("root", "admin"))
    assert missing.status_code == 404


def test_bad_input_is_a_problem(client: TestClient, auth: TokenFactory, blue: str) -> None:
    sec = auth("sue", "security")
    for body in ({"reason": ""}, {"reason": "x" * 501}, {"unknown": 1}):
        bad = client.post("/api/v1/tenants/blue/access-reviews", json=body, headers=sec)
        assert bad.status_code == 422, body
        assert bad.headers["content-type"].startswith("application/problem+json")


def test_the_cli_starts_a_review_once(
    server: Server,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    monkeypatch.setenv("TENANTOPS_TOKEN", mint_token(server.db, "sam", "security"))
    started = invoke(capsys, "tenants", "access-review", "cli-blue", "--reason", "quarterly")
    assert started.code == 0, started
    assert started.out.startswith("access review of cli-blue started: run ")
    again = invoke(capsys, "tenants", "access-review", "cli-blue")
    assert again.code == 1
    assert again.err.startswith("error: Conflict: the access review of cli-blue is open: run ")
    assert again.err.count("\n") == 1


def test_the_runbook_passes_its_own_test(capsys: pytest.CaptureFixture[str]) -> None:
    """``tenantops runbooks test access-review``: a sandboxed run on the local drivers."""
    tested = invoke(capsys, "runbooks", "test", "access-review")
    assert tested.code == 0, tested
    assert "PASS access-review 1.0" in tested.out
