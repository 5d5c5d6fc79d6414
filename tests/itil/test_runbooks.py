"""The standard runbooks record their ITIL records: Quota and Budget Change a standard
change opened once approved and closed at the end, Tenant Suspension a P2 incident (which
pages on-call) resolved once the tenant is isolated."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.identity.local import LocalIdentity
from tenantops.drivers.secrets.local import LocalSecrets
from tenantops.drivers.secrets.port import PathSpec
from tenantops.oncall.models import Page
from tenantops.runbooks.worker import Worker
from tenantops.tenants.lifecycle import TenantState as S
from tenantops.wiring import build_actions
from tests.conftest import Actors, TokenFactory
from tests.flows import drain, ok, tenant_in
from tests.requests.test_requests_api import quiet, requests_url

RECORDS = "/api/v1/itil/records"


@pytest.fixture
def active(client: TestClient, actors: Actors, db: Database) -> dict[str, Any]:
    tenant = tenant_in(client, actors, S.ACTIVE, name="itil-shop")
    quiet(db, tenant["id"])
    return tenant


def records(client: TestClient, actors: Actors, tenant: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = ok(
        client.get(RECORDS, params={"tenant": tenant}, headers=actors.auditor)
    )["items"]
    return items


def test_a_quota_change_records_its_change_and_closes_it(
    client: TestClient,
    actors: Actors,
    auth: TokenFactory,
    db: Database,
    settings: Settings,
    active: dict[str, Any],
) -> None:
    owner = auth("olga", "tenant_owner", tenant=active["id"])
    body = {"kind": "quota", "tier": "premium", "justification": "launch next month"}
    filed = ok(client.post(requests_url(active["id"]), json=body, headers=owner), 201)
    worker = Worker(db, build_actions(settings, db))
    drain(worker)
    assert records(client, actors, "itil-shop") == []  # nothing before the approval
    approved = client.post(
        f"/api/v1/runs/{filed['id']}/gates/approval",
        json={"decision": "approve", "comment": "ok"},
        headers=actors.gov,
    )
    ok(approved)
    drain(worker)
    (change,) = records(client, actors, "itil-shop")
    assert (change["number"], change["kind"], change["state"]) == ("CHG0000001", "change", "closed")
    assert (change["run_id"], change["source"]) == (filed["id"], "runbook")
    assert change["fields"]["type"] == "standard"
    assert "moved to tier premium" in change["resolution"]
    detail = ok(client.get(f"{RECORDS}/{change['number']}", headers=actors.ops))
    assert [n["text"].splitlines()[0] for n in detail["timeline"] if n["kind"] == "state"] == [
        "new -> scheduled",
        "scheduled -> implement",
        "implement -> review",
        "review -> closed",
    ]
    # The tenant owner reads their tenant's change too.
    assert ok(client.get(RECORDS, headers=owner))["items"][0]["id"] == change["id"]


def test_a_budget_change_records_its_change_and_closes_it(
    client: TestClient,
    actors: Actors,
    auth: TokenFactory,
    db: Database,
    settings: Settings,
    active: dict[str, Any],
) -> None:
    owner = auth("olga", "tenant_owner", tenant=active["id"])
    body = {"kind": "budget", "amount": 3000, "justification": "more traffic"}
    filed = ok(client.post(requests_url(active["id"]), json=body, headers=owner), 201)
    approved = client.post(
        f"/api/v1/runs/{filed['id']}/gates/approval",
        json={"decision": "approve", "comment": "ok"},
        headers=auth("fay", "finance"),
    )
    ok(approved)
    drain(Worker(db, build_actions(settings, db)))
    (change,) = records(client, actors, "itil-shop")
    assert (change["kind"], change["state"], change["run_id"]) == ("change", "closed", filed["id"])
    assert "3000" in change["resolution"]


def suspend(client: TestClient, actors: Actors, tenant: dict[str, Any]) -> None:
    suspended = client.post(
        f"/api/v1/tenants/{tenant['id']}/suspend",
        json={"reason": "payment breach", "incident_ref": "INC42"},
        headers=actors.ops,
    )
    assert ok(suspended)["state"] == "suspended"


def page_of(db: Database, record_id: str) -> Page:
    with db.read() as session:
        page = session.scalar(select(Page).where(Page.key == f"itil:{record_id}"))
        assert page is not None
        return page


def test_a_suspension_is_an_incident_paged_and_resolved_once_isolated(
    client: TestClient, actors: Actors, db: Database, settings: Settings, active: dict[str, Any]
) -> None:
    LocalSecrets(db).create_store(
        tenant_id=active["id"],
        tenant_name=active["name"],
        paths=[PathSpec("app/config")],
        idempotency_key="store",
    )
    LocalIdentity(db).create_group(
        tenant_id=active["id"], tenant_name=active["name"], grants=[], idempotency_key="group"
    )
    suspend(client, actors, active)
    drain(Worker(db, build_actions(settings, db)))
    (incident,) = records(client, actors, "itil-shop")
    assert (incident["number"], incident["priority"], incident["state"]) == (
        "INC0000001",
        2,
        "resolved",
    )
    assert "payment breach" in incident["title"]
    assert "isolated" in incident["resolution"]
    page = page_of(db, incident["id"])
    assert (page.severity, page.status) == ("high", "resolved")


def test_an_isolation_that_fails_leaves_its_incident_open_and_on_call_paged(
    client: TestClient, actors: Actors, db: Database, settings: Settings, active: dict[str, Any]
) -> None:
    suspend(client, actors, active)  # no secret store: revoking the secrets needs a human
    drain(Worker(db, build_actions(settings, db)))
    (incident,) = records(client, actors, "itil-shop")
    assert (incident["state"], incident["priority"]) == ("new", 2)
    assert page_of(db, incident["id"]).status == "triggered"
