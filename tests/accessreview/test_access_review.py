"""The Access Review checklist: started over the API, completed by security, kept in the audit."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth import tokens
from tenantops.auth.principal import SYSTEM, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import identity_provider
from tenantops.drivers.identity.port import Grant, Permission
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
    blue_token = mint_token(db, "blue-deploy", "tenant_owner", tenant=blue)
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
    assert evidence["tokens_active"] == 3  # blue-ci, blue-deploy and the break-glass token
    assert evidence["users_enabled"] == 1
    assert evidence["break_glass_open"] == 1
    # The findings every role may read name nobody; the snapshot file names mallory.
    assert evidence["findings"] == ["1 member(s) neither owner nor contact"]
    assert len(evidence["digest"]) == 64
    assert steps["snapshot"]["output"]["snapshot"] == (
        f"/api/v1/tenants/{blue}/access-reviews/{run_id}/snapshot"
    )
    got = client.get(steps["snapshot"]["output"]["snapshot"], headers=reviewer)
    assert got.status_code == 200, got.text
    assert hashlib.sha256(got.content).hexdigest() == evidence["digest"]
    assert got.headers["X-Evidence-SHA256"] == evidence["digest"]
    snapshot = got.json()
    assert (
        "mallory@example.com holds read but is neither owner nor contact" in (snapshot["findings"])
    )
    members = {m["subject"]: m for m in snapshot["members"]}
    assert members[OWNER] == {
        "subject": OWNER,
        "permission": "write",
        "as": "owner",
        "state": "enabled",
    }
    assert members["ops@acme.example"]["as"] == "contact"
    assert members["mallory@example.com"]["as"] == "unexpected"
    assert {t["subject"] for t in snapshot["tokens"]} == {
        "blue-ci",
        "blue-deploy",
        "breakglass:oli",
    }
    assert all(set(t) >= {"prefix"} for t in snapshot["tokens"])
    assert snapshot["users"][0]["username"] == "blue-viewer"
    assert snapshot["break_glass"][0]["incident_ref"] == "INC7"
    # No secret: neither a token's value nor its stored hash, in the file or the run's answer.
    with db.read() as session:
        rows = list(tokens.list_tokens(session))
    deploy = next(r for r in rows if r.subject == "blue-deploy")
    assert deploy.token_hash == hashlib.sha256(blue_token.encode()).hexdigest()
    for text in (got.text, json.dumps(waiting)):
        assert blue_token not in text
        assert not any(r.token_hash in text for r in rows)
    notes = ok(client.get("/api/v1/notifications", headers=auth("root", "admin")))["items"]
    mine = [n for n in notes if n["run_id"] == run_id]
    assert any(n["subject"].startswith("[Security] Access review due: blue") for n in mine)
    assert any(n["subject"] == "Access review of your tenant blue" for n in mine)

    # Not security: refused at the gate; the starter: refused too (segregation of duties).
    assert decide(client, ops, run_id, "confirm-members", "fine").status_code == 403
    assert decide(client, starter, run_id, "confirm-members", "mine").status_code == 403
    ok(decide(client, reviewer, run_id, "confirm-members", "mallory left in March"))
    ok(decide(client, reviewer, run_id, "confirm-tokens", "blue-ci is the deploy bot"))
    ok(decide(client, reviewer, run_id, "decide", "revoke member:mallory@example.com; left"))
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
    assert entry.detail["decision"] == "revoke member:mallory@example.com; left"
    assert entry.detail["revoked"] == ["member:mallory@example.com"]
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
    assert "PASS access-review 1.4" in tested.out


def _snapshot_done(client: TestClient, worker: Worker, starter: dict[str, str]) -> dict[str, Any]:
    run = ok(client.post("/api/v1/tenants/blue/access-reviews", json={}, headers=starter), 201)
    drain(worker)
    return {"id": run["id"]}


def test_only_security_governance_auditors_and_admins_read_the_snapshot(
    client: TestClient, auth: TokenFactory, db: Database, settings: Settings, blue: str
) -> None:
    """Every role reads the run, but it names nobody; the snapshot names them, for a few."""
    worker = Worker(db, build_actions(settings, db))
    run_id = _snapshot_done(client, worker, auth("sam", "security"))["id"]
    with db.read() as session:
        prefixes = [r.prefix for r in tokens.list_tokens(session)]
    names = ["mallory@example.com", OWNER, "blue-ci", "blue-viewer", *prefixes]
    route = f"/api/v1/tenants/blue/access-reviews/{run_id}/snapshot"
    owner = auth("olga", "tenant_owner", tenant=blue)
    for who in (owner, auth("quinn", "qa"), auth("fin", "finance")):
        run = ok(client.get(f"/api/v1/runs/{run_id}", headers=who))
        step = next(s for s in run["steps"] if s["name"] == "snapshot")
        assert step["status"] == "succeeded"
        shown = json.dumps([step["output"], step["evidence"]])
        assert not [n for n in names if n in shown], shown
        assert "/" + settings.data_dir.name + "/" not in shown  # no server path
        refused = client.get(route, headers=who)
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
    recorded = step["evidence"]["digest"]
    for role in ("security", "governance", "auditor", "admin"):
        got = client.get(route, headers=auth("x", role))
        assert got.status_code == 200, role
        assert hashlib.sha256(got.content).hexdigest() == recorded
        assert got.headers["X-Evidence-SHA256"] == recorded
    sec = auth("sue", "security")
    missing = client.get(f"/api/v1/tenants/blue/access-reviews/{'0' * 36}/snapshot", headers=sec)
    assert missing.status_code == 404


def test_access_bound_to_no_tenant_is_in_the_snapshot(
    client: TestClient, auth: TokenFactory, db: Database, settings: Settings, blue: str
) -> None:
    """An unbound admin token, an unbound web user and an unbound break-glass grant reach blue."""
    mint_token(db, "root-bot", "admin")
    with db.write() as session:
        web.create_user(
            session,
            actor=SYSTEM,
            username="platform-admin",
            password="a long enough password 2",
            roles=[Role.ADMIN],
            tenant_id=None,
        )
        admin_prefix = next(
            r.prefix for r in tokens.list_tokens(session) if r.subject == "root-bot"
        )
    ok(
        client.post(
            "/api/v1/break-glass",
            json={"reason": "all tenants are down", "incident_ref": "INC9"},
            headers=auth("oli", "ops_engineer"),
        ),
        201,
    )
    worker = Worker(db, build_actions(settings, db))
    sec = auth("sue", "security")
    run_id = _snapshot_done(client, worker, auth("sam", "security"))["id"]
    run = ok(client.get(f"/api/v1/runs/{run_id}", headers=sec))
    evidence = next(s for s in run["steps"] if s["name"] == "snapshot")["evidence"]
    assert evidence["break_glass_open"] == 0  # not bound to blue, so not blue's own
    assert evidence["platform_break_glass_open"] == 1
    assert evidence["platform_users_enabled"] == 1
    # root-bot, the break-glass token and the test's own unbound tokens (oli, sam, sue).
    assert evidence["platform_tokens_active"] == 5
    snapshot = client.get(
        f"/api/v1/tenants/blue/access-reviews/{run_id}/snapshot", headers=sec
    ).json()
    platform = snapshot["platform"]
    root = next(t for t in platform["tokens"] if t["subject"] == "root-bot")
    assert (root["prefix"], root["roles"]) == (admin_prefix, ["admin"])
    assert "breakglass:oli" in {t["subject"] for t in platform["tokens"]}
    assert [(u["username"], u["roles"]) for u in platform["users"]] == [
        ("platform-admin", ["admin"])
    ]
    [grant] = platform["break_glass"]
    assert (grant["open"], grant["incident_ref"], grant["subject"]) == (
        True,
        "INC9",
        "breakglass:oli",
    )
    assert snapshot["break_glass"] == []
