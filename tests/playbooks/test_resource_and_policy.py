"""The Resource Exhaustion and Policy Violation playbooks on the embedded default.

Started the way the Alertmanager receiver starts them (a system principal, the
tenant snapshot and the alert as inputs), run by a real worker with the wired
actions, decided through the API like any gate.
"""

from __future__ import annotations

import subprocess
from typing import Any

import yaml
from fastapi.testclient import TestClient

from tenantops.auth.principal import Principal, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.runbooks import engine, spec
from tenantops.runbooks.worker import Worker
from tenantops.tenants.lifecycle import TenantState as S
from tenantops.tenants.models import Tenant
from tenantops.tenants.schemas import TenantRead
from tenantops.wiring import build_actions
from tests.conftest import Actors
from tests.flows import drain, ok, tenant_in

RECEIVER = Principal("system:alertmanager", frozenset({Role.ADMIN}), via="system")


def start(db: Database, runbook: str, tenant_id: str, alert: dict[str, Any]) -> str:
    with db.write() as session:
        for run in engine.open_runs(session, tenant_id=tenant_id):  # the tenant's onboarding
            engine.cancel(session, run_id=run.id, principal=RECEIVER, reason="test setup")
        tenant = session.get(Tenant, tenant_id)
        run = engine.start_run(
            session,
            loaded=spec.get(spec.shipped(), runbook),
            actor=RECEIVER,
            tenant_id=tenant_id,
            inputs={
                "tenant": TenantRead.model_validate(tenant).model_dump(mode="json"),
                "alert": alert,
            },
        )
        return run.id


def run_of(client: TestClient, who: dict[str, str], run_id: str) -> dict[str, Any]:
    return ok(client.get(f"/api/v1/runs/{run_id}", headers=who))


def test_resource_exhaustion_moves_the_tenant_up_a_tier_only_after_governance_approves(
    client: TestClient, actors: Actors, db: Database, settings: Settings
) -> None:
    tenant = tenant_in(client, actors, S.ACTIVE, tier="basic")
    worker = Worker(db, build_actions(settings, db))
    alert = {
        "alertname": "TenantQuotaExhaustion",
        "labels": {"tenant": tenant["name"], "resource": "requests.cpu"},
        "annotations": {"summary": "cpu requests at 95 % of the quota"},
    }
    run_id = start(db, "resource-exhaustion", tenant["id"], alert)

    drain(worker)
    waiting = run_of(client, actors.ops, run_id)
    assert (waiting["status"], waiting["current_step"]) == ("waiting", "approval")
    steps = {s["name"]: s for s in waiting["steps"]}
    assert steps["propose"]["evidence"]["to_tier"] == "standard"
    assert steps["propose"]["evidence"]["quota_after"]["requests.cpu"] == "8"
    notes = ok(client.get("/api/v1/notifications", headers=actors.ops))["items"]
    subjects = {n["subject"] for n in notes if n["run_id"] == run_id}
    assert any("running out of requests.cpu" in s for s in subjects)
    assert ok(client.get(f"/api/v1/tenants/{tenant['id']}", headers=actors.ops))["tier"] == "basic"

    # Ops may not approve a quota change: the gate is governance's.
    r = client.post(
        f"/api/v1/runs/{run_id}/gates/approval", json={"decision": "approve"}, headers=actors.ops
    )
    assert r.status_code == 403, r.text
    ok(
        client.post(
            f"/api/v1/runs/{run_id}/gates/approval",
            json={"decision": "approve", "comment": "growth is expected"},
            headers=actors.gov,
        )
    )
    drain(worker)

    done = run_of(client, actors.ops, run_id)
    assert done["status"] == "succeeded", done
    assert ok(client.get(f"/api/v1/tenants/{tenant['id']}", headers=actors.ops))["tier"] == (
        "standard"
    )
    commit = {s["name"]: s for s in done["steps"]}["gitops"]["evidence"]["commit"]
    quota = yaml.safe_load(
        subprocess.run(
            ["git", "show", f"{commit}:tenants/{tenant['name']}/resourcequota.yaml"],
            cwd=settings.data_dir / "gitops",
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert quota["spec"]["hard"]["requests.cpu"] == "8"
    trail = ok(client.get("/api/v1/audit", params={"tenant": tenant["id"]}, headers=actors.admin))
    assert "tenant.tier_changed" in {e["action"] for e in trail["items"]}


def test_resource_exhaustion_at_the_largest_tier_needs_a_human(
    client: TestClient, actors: Actors, db: Database, settings: Settings
) -> None:
    tenant = tenant_in(client, actors, S.ACTIVE, tier="enterprise")
    worker = Worker(db, build_actions(settings, db))
    run_id = start(db, "resource-exhaustion", tenant["id"], {"alertname": "TenantQuota"})
    drain(worker)
    run = run_of(client, actors.ops, run_id)
    assert run["status"] == "failed"
    assert "largest tier" in run["error"]


def test_policy_violation_tells_security_opens_an_incident_and_waits_for_the_review(
    client: TestClient, actors: Actors, db: Database, settings: Settings
) -> None:
    tenant = tenant_in(client, actors, S.ACTIVE)
    worker = Worker(db, build_actions(settings, db))
    alert = {
        "alertname": "TenantPolicyViolation",
        "labels": {"tenant": tenant["name"], "policy": "privileged-container"},
        "annotations": {"summary": "a privileged pod was admitted"},
    }
    run_id = start(db, "policy-violation", tenant["id"], alert)
    drain(worker)

    waiting = run_of(client, actors.sec, run_id)
    assert (waiting["status"], waiting["current_step"]) == ("waiting", "review")
    incident = {s["name"]: s for s in waiting["steps"]}["incident"]["evidence"]
    assert incident["number"]
    notes = ok(client.get("/api/v1/notifications", headers=actors.sec))["items"]
    assert any(
        "privileged-container" in n["subject"] and n["audience"] == "security" for n in notes
    )

    ok(
        client.post(
            f"/api/v1/runs/{run_id}/gates/review", json={"decision": "approve"}, headers=actors.sec
        )
    )
    drain(worker)
    assert run_of(client, actors.sec, run_id)["status"] == "succeeded"
