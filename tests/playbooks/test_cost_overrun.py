"""The Cost Overrun playbook on the embedded default, step by step.

Cost comes from a real FOCUS import; the playbook is started as the
Alertmanager receiver starts it, run by a worker with the wired actions, its
gates decided through the API. Without PagerDuty the page reaches on-call by
message; the rate limit is the local token bucket. The real Prometheus,
Alertmanager, Redis and PagerDuty-shaped chain is tests/playbooks/test_cost_overrun_e2e.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from tenantops.auth.principal import Principal, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.finops import ledger
from tenantops.finops.importer import import_file
from tenantops.runbooks.worker import Worker
from tenantops.tenants.lifecycle import TenantState as S
from tenantops.wiring import build_actions
from tests.conftest import Actors, Clock, TokenFactory
from tests.finops.focusdata import tagged, write_csv
from tests.flows import drain, ok, tenant_in
from tests.playbooks.test_resource_and_policy import run_of, start

FIN = Principal("fiona", frozenset({Role.FINANCE}))


def test_cost_overrun_pages_assesses_limits_after_approval_reports_and_lifts_on_resolution(
    client: TestClient,
    actors: Actors,
    auth: TokenFactory,
    db: Database,
    settings: Settings,
    clock: Clock,
    tmp_path: Path,
) -> None:
    clock.now = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
    finance = auth("fiona", "finance")
    tenant = tenant_in(client, actors, S.ACTIVE)
    r = client.put(
        f"/api/v1/tenants/{tenant['id']}/budget",
        json={"amount": "100.00", "currency": "EUR"},
        headers=finance,
    )
    assert r.status_code == 200, r.text
    day = {"ChargePeriodStart": "2030-01-03T00:00:00Z", "ChargePeriodEnd": "2030-01-04T00:00:00Z"}
    rows = [
        tagged(tenant["name"], "90.00", ServiceName="Object Storage", **day),
        tagged(tenant["name"], "40.00", ServiceName="Virtual Machines", **day),
    ]
    with db.write() as session:
        import_file(
            session,
            path=write_csv(tmp_path / "jan.csv", rows),
            principal=FIN,
            settings=settings.finops,
        )
    worker = Worker(db, build_actions(settings, db))
    alert = {"alertname": "TenantBudgetExceeded", "labels": {"tenant": tenant["name"]}}
    run_id = start(db, "cost-overrun", tenant["id"], alert)

    drain(worker)
    waiting = run_of(client, finance, run_id)
    assert (waiting["status"], waiting["current_step"]) == ("waiting", "approval")
    steps = {s["name"]: s["evidence"] for s in waiting["steps"]}
    assert steps["page-finops"]["paged_by"] == "notification"  # no PagerDuty configured
    assessed = steps["assess"]
    assert (assessed["cost"], assessed["budget"]) == ("130.00", "100.00")
    assert assessed["ratio"] == "1.3000"
    assert [h["service"] for h in assessed["hotspots"]] == ["Object Storage", "Virtual Machines"]
    assert assessed["thresholds_crossed"] == [50, 80, 100, 120]
    # 130 in 14.5 days of 31 (noon on the 15th): the burn rate projects 277.93.
    assert assessed["forecast"] == "277.93"

    # The rate limit waits for finance; security may not decide it.
    r = client.post(
        f"/api/v1/runs/{run_id}/gates/approval", json={"decision": "approve"}, headers=actors.sec
    )
    assert r.status_code == 403, r.text
    ok(
        client.post(
            f"/api/v1/runs/{run_id}/gates/approval",
            json={"decision": "approve", "comment": "storage runaway"},
            headers=finance,
        )
    )
    drain(worker)
    waiting = run_of(client, finance, run_id)
    assert (waiting["status"], waiting["current_step"]) == ("waiting", "resolved")
    steps = {s["name"]: s["evidence"] for s in waiting["steps"]}
    assert steps["rate-limit"]["rate_limit"] == {"rate": 10.0, "burst": 20}
    report = steps["report"]
    for fmt in ("html", "csv", "pdf"):
        assert Path(report[fmt]).is_file()
        assert len(report["digest"][fmt]) == 64
    assert "Object Storage" in Path(report["html"]).read_text()
    notes = ok(client.get("/api/v1/notifications", headers=actors.ops))["items"]
    told = {
        n["audience"]: n for n in notes if n["run_id"] == run_id and n["template"] == "cost_overrun"
    }
    assert any(n["template"] == "page" and n["audience"] == "finance" for n in notes)
    assert "exceeded its monthly budget" in told["tenant_owner"]["subject"]
    assert "over budget (130 %" in told["finance"]["subject"]
    assert steps["follow-up"]["due"] == "2030-01-22"

    with db.read() as session:
        booked, _ = ledger.entries(session, tenant_id=tenant["id"], kinds=["action", "follow_up"])
    kinds = {e.kind: e for e in booked}
    assert kinds["action"].data is not None
    assert kinds["action"].data["measures"]["rate_limit"] == {"rate": 10.0, "burst": 20}
    assert kinds["follow_up"].data == {
        "summary": f"Review the cost drivers of {tenant['name']} with its owner: "
        "raise the budget or optimise",
        "owner": "finance",
        "due": "2030-01-22",
        "run_id": run_id,
        "status": "open",
    }

    # No resolution will come (the rule was removed): finance closes the wait by hand,
    # which the gate allows (manual: true); ops may not.
    r = client.post(
        f"/api/v1/runs/{run_id}/gates/resolved", json={"decision": "approve"}, headers=actors.ops
    )
    assert r.status_code == 403, r.text
    ok(
        client.post(
            f"/api/v1/runs/{run_id}/gates/resolved",
            json={"decision": "approve", "comment": "rule retired"},
            headers=finance,
        )
    )
    drain(worker)
    done = run_of(client, finance, run_id)
    assert done["status"] == "succeeded", done
    steps = {s["name"]: s["evidence"] for s in done["steps"]}
    assert steps["lift-rate-limit"]["rate_limit"] is None
    with db.read() as session:
        limits, _ = ledger.entries(session, tenant_id=tenant["id"], kinds=["rate_limit"])
    assert [(e.data or {})["action"] for e in reversed(limits)] == ["applied", "lifted"]
    assert {e.ref for e in limits} == {run_id}
