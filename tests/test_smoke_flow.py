"""The whole lifecycle through the API, as an operations team would drive it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests import flows
from tests.conftest import Actors
from tests.factories import tenant_body


def test_request_approve_provision_suspend_reactivate_offboard(
    client: TestClient, actors: Actors
) -> None:
    am, gov, sec, ops, qa = actors.am, actors.gov, actors.sec, actors.ops, actors.qa

    r = client.post("/api/v1/tenants", json=tenant_body(name="acme"), headers=am)
    assert r.status_code == 201, r.text
    tenant = r.json()
    assert tenant["state"] == "requested"
    tid = tenant["id"]

    r = client.post(
        f"/api/v1/tenants/{tid}/approvals",
        json={"role": "governance", "decision": "approve", "risk_ref": "RISK-1"},
        headers=gov,
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "requested"
    r = client.post(
        f"/api/v1/tenants/{tid}/approvals",
        json={"role": "security", "decision": "approve"},
        headers=sec,
    )
    assert r.json()["state"] == "approved"

    for event, who in [("start_provisioning", ops), ("provisioned", ops), ("verified", qa)]:
        r = client.post("/api/v1/tenants/acme/lifecycle-events", json={"event": event}, headers=who)
        assert r.status_code == 200, r.text
    assert r.json()["state"] == "active"

    r = client.post(
        "/api/v1/tenants/acme/suspend",
        json={"reason": "payment breach", "incident_ref": "INC1"},
        headers=ops,
    )
    assert r.json()["state"] == "suspended"

    r = client.post(
        "/api/v1/tenants/acme/reactivation-requests", json={"reason": "paid"}, headers=am
    )
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    r = client.post(
        f"/api/v1/tenants/acme/reactivation-requests/{request_id}/approvals",
        json={"decision": "approve"},
        headers=gov,
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "suspended"  # until the reactivation run has restored it
    assert flows.reactivated(client.app.state.db, tid) == "active"  # type: ignore[attr-defined]

    r = client.post("/api/v1/tenants/acme/offboard", json={"reason": "contract ended"}, headers=am)
    assert r.json()["state"] == "offboarding"
    r = client.post("/api/v1/tenants/acme/lifecycle-events", json={"event": "archive"}, headers=ops)
    assert r.json()["state"] == "archived"

    audit = client.get("/api/v1/audit", params={"tenant_id": tid}, headers=actors.auditor).json()[
        "items"
    ]
    assert [e["action"] for e in audit] == [
        "tenant.requested",
        "tenant.approval.recorded",
        "tenant.approved",
        "tenant.step.start_provisioning",
        "tenant.step.provisioned",
        "tenant.step.verified",
        "tenant.suspended",
        "tenant.reactivation.requested",
        "tenant.reactivation.approved",
        "tenant.reactivated",
        "tenant.offboarding",
        "tenant.step.archive",
    ]
