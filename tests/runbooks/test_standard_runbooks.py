"""The standard runbooks end to end on a real server with its in-process worker.

Onboarding (request -> approvals -> provisioning -> verification -> handover),
suspension/isolation, reactivation and offboarding, on SQLite and PostgreSQL,
through the public API only; then the evidence they left behind is checked
where an auditor would look: the GitOps history, the data directory, the audit
trail.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenantops.db import Database
from tests.conftest import STORES, create_pg_database, drop_pg_database
from tests.factories import tenant_body
from tests.servers import bearer, mint_token, run_cli, serve_process, tenantops_env

DEADLINE = 90.0  # seconds a runbook may take on a loaded 2-core machine


@pytest.fixture(params=STORES)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Database, Path]]:
    """A migrated store and ``tenantops serve`` on it; yields (url, db, data dir)."""
    data = tmp_path / "data"
    url = (
        f"sqlite:///{data / 'tenantops.db'}" if request.param == "sqlite" else create_pg_database()
    )
    env = tenantops_env(
        data_dir=str(data),
        database_url=url,
        log_json="false",
        worker__poll_seconds="0.1",
        bootstrap_admin="false",
    )
    try:
        data.mkdir()
        migrated = run_cli("db", "upgrade", env=env)
        assert migrated.returncode == 0, migrated.stderr
        db = Database(url)
        with serve_process(env, tmp_path / "serve.log") as base:
            yield base, db, data
        db.dispose()
    finally:
        if request.param == "postgres":
            drop_pg_database(url)


def wait_for(get: Any, what: str) -> Any:
    """Poll ``get()`` until it returns something truthy, for at most DEADLINE seconds."""
    until = time.monotonic() + DEADLINE
    while time.monotonic() < until:
        value = get()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def git_log(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%H %s", "--all"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


def test_onboarding_suspension_reactivation_offboarding(
    server: tuple[str, Database, Path],
) -> None:
    base, db, data = server
    people = {
        name: bearer(mint_token(db, name, role))
        for name, role in [
            ("amy", "account_manager"),
            ("gus", "governance"),
            ("gwen", "governance"),
            ("sue", "security"),
            ("oli", "ops_engineer"),
            ("ada", "auditor"),
        ]
    }
    api = httpx.Client(base_url=base + "/api/v1", timeout=30)
    try:
        _walk_the_lifecycle(api, people, data, db)
    finally:
        api.close()


def _walk_the_lifecycle(
    api: httpx.Client, people: dict[str, dict[str, str]], data: Path, db: Database
) -> None:

    def tenant() -> dict[str, Any]:
        return api.get("/tenants/acme", headers=people["amy"]).json()

    def runs(runbook: str) -> list[dict[str, Any]]:
        page = api.get(
            "/runs", params={"tenant": "acme", "runbook": runbook}, headers=people["oli"]
        ).json()
        return page["items"]

    def finished(runbook: str) -> dict[str, Any] | None:
        done = [r for r in runs(runbook) if r["status"] in ("succeeded", "failed")]
        return done[0] if done else None

    # Intake: the onboarding run starts with the request and waits at its approval gate.
    r = api.post("/tenants", json=tenant_body(name="acme"), headers=people["amy"])
    assert r.status_code == 201, r.text
    onboarding = wait_for(lambda: runs("tenant-onboarding"), "the onboarding run")[0]
    waiting = wait_for(
        lambda: (lambda run: run if run["status"] == "waiting" else None)(
            api.get(f"/runs/{onboarding['id']}", headers=people["oli"]).json()
        ),
        "the approval gate",
    )
    assert waiting["current_step"] == "approval"

    # Approval by governance and security opens the gate; provisioning runs by itself.
    for who, role in [("gus", "governance"), ("sue", "security")]:
        r = api.post(
            "/tenants/acme/approvals",
            json={"role": role, "decision": "approve"},
            headers=people[who],
        )
        assert r.status_code == 200, r.text
    run = wait_for(lambda: finished("tenant-onboarding"), "onboarding to finish")
    assert run["status"] == "succeeded", run
    assert tenant()["state"] == "active"
    detail = api.get(f"/runs/{run['id']}", headers=people["oli"]).json()
    steps = {s["name"]: s for s in detail["steps"]}
    commit = steps["gitops"]["evidence"]["commit"]
    assert any(line.startswith(commit) for line in git_log(data / "gitops"))
    assert steps["gitops"]["evidence"]["manifest_digest"]
    assert steps["health-check"]["evidence"]["passed"] is True
    assert steps["handover"]["evidence"]["message_id"]
    assert detail["sla"]["breached"] is False
    assert detail["runbook_hash"]
    assert detail["runbook_version"] == "1.2"
    # The embedded default chose neither Terraform nor a cluster: the steps say so.
    assert steps["terraform"]["evidence"]["skipped"] is True
    assert "GitOps" in steps["terraform"]["evidence"]["reason"]
    assert steps["argocd-sync"]["evidence"]["revision"] == commit
    assert steps["argocd-sync"]["evidence"]["observed_by"] == "local (no cluster)"

    # Suspension: isolation committed, stakeholders told, evidence collected.
    r = api.post(
        "/tenants/acme/suspend",
        json={"reason": "payment breach", "incident_ref": "INC42"},
        headers=people["oli"],
    )
    assert r.json()["state"] == "suspended"
    run = wait_for(lambda: finished("tenant-suspension"), "suspension to finish")
    assert run["status"] == "succeeded", run
    assert any("Isolate tenant acme" in line for line in git_log(data / "gitops"))
    notes = api.get("/notifications", params={"tenant": "acme"}, headers=people["oli"]).json()
    recipients = {to for n in notes["items"] for to in n["recipients"]}
    assert {"legal@localhost", "finance@localhost", "owner@acme.example"} <= recipients
    evidence = {
        s["name"]: s for s in api.get(f"/runs/{run['id']}", headers=people["oli"]).json()["steps"]
    }
    assert evidence["collect-evidence"]["evidence"]["incident_ref"] == "INC42"
    assert "through GitOps" in evidence["isolate-now"]["evidence"]["reason"]

    # Reactivation only after governance approves; the isolation is lifted.
    r = api.post(
        "/tenants/acme/reactivation-requests", json={"reason": "paid"}, headers=people["amy"]
    )
    request_id = r.json()["id"]
    r = api.post(
        f"/tenants/acme/reactivation-requests/{request_id}/approvals",
        json={"decision": "approve"},
        headers=people["gwen"],
    )
    assert r.json()["state"] == "suspended"  # until the isolation is reversed
    run = wait_for(lambda: finished("tenant-reactivation"), "reactivation to finish")
    assert run["status"] == "succeeded", run
    assert any("Lift the isolation of tenant acme" in line for line in git_log(data / "gitops"))
    assert tenant()["state"] == "active"
    steps = [
        s["name"] for s in api.get(f"/runs/{run['id']}", headers=people["oli"]).json()["steps"]
    ]
    assert steps.index("reactivated") > steps.index("enable-access")  # active once restored

    # Offboarding: export, revocation, namespace removal, certificate, archived.
    r = api.post("/tenants/acme/offboard", json={"reason": "contract ended"}, headers=people["amy"])
    assert r.json()["state"] == "offboarding"
    run = wait_for(lambda: finished("tenant-offboarding"), "offboarding to finish")
    assert run["status"] == "succeeded", run
    assert tenant()["state"] == "archived"
    steps = {
        s["name"]: s for s in api.get(f"/runs/{run['id']}", headers=people["oli"]).json()["steps"]
    }
    certificate_file = next(
        (data / "certificates").rglob(steps["certificate"]["evidence"]["certificate"])
    )
    certificate = json.loads(certificate_file.read_text())
    body = {k: v for k, v in certificate.items() if k != "digest"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == certificate["digest"]
    assert certificate["export_digest"] == steps["export"]["evidence"]["digest"]
    export_file = next((data / "exports").rglob(steps["export"]["evidence"]["bundle"]))
    assert hashlib.sha256(export_file.read_bytes()).hexdigest() == certificate["export_digest"]
    assert certificate["removal_commit"] in {line.split()[0] for line in git_log(data / "gitops")}

    # The trail an auditor reads is intact after all of it.
    verified = run_cli("audit", "verify", env=tenantops_env(database_url=db.url))
    assert verified.returncode == 0, verified.stderr
