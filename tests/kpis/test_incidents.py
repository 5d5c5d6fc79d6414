"""The KPIs' incidents are the ITIL incident records, the number ``/records`` lists.

Through the real paths: a suspension's runbook opens its P2 incident, an
operator opens one by hand, for a tenant and for the platform; the dashboard's
counts, per tenant and overall, are then compared with the records API.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.runbooks.worker import Worker
from tenantops.tenants.lifecycle import TenantState as S
from tenantops.wiring import build_actions
from tests.conftest import Actors, TokenFactory
from tests.flows import drain, ok, request_tenant, tenant_in
from tests.requests.test_requests_api import quiet

KPIS = "/api/v1/kpis"
RECORDS = "/api/v1/itil/records"

pytestmark = pytest.mark.usefixtures("clock")


def open_record(client: TestClient, actors: Actors, kind: str, tenant: str | None) -> str:
    body = {"kind": kind, "title": f"{kind} by hand", "priority": 3, "tenant": tenant}
    number: str = ok(client.post(RECORDS, json=body, headers=actors.ops), 201)["number"]
    return number


def listed(client: TestClient, actors: Actors, **params: Any) -> int:
    """How many incident records ``/records`` lists with ``params``."""
    page = ok(client.get(RECORDS, params={"kind": "incident", **params}, headers=actors.ops))
    assert page.get("next_cursor") is None  # one page holds them all here
    return len(page["items"])


@pytest.fixture
def fleet(client: TestClient, actors: Actors, db: Database, settings: Settings) -> dict[str, str]:
    """shop: suspended, its isolation stuck (no secret store), so its P2 incident is
    still open, and an incident opened by hand then resolved; depot: a change only;
    annex: nothing. The platform: one open incident."""
    shop = tenant_in(client, actors, S.ACTIVE, name="shop", tier="premium")
    depot = tenant_in(client, actors, S.ACTIVE, name="depot")
    annex = request_tenant(client, actors.am, name="annex")
    quiet(db, shop["id"], depot["id"])
    suspended = client.post(
        f"/api/v1/tenants/{shop['id']}/suspend",
        json={"reason": "payment breach", "incident_ref": "INC42"},
        headers=actors.ops,
    )
    assert ok(suspended)["state"] == "suspended"
    drain(Worker(db, build_actions(settings, db)))
    by_hand = open_record(client, actors, "incident", "shop")
    resolved = client.post(
        f"{RECORDS}/{by_hand}/transitions",
        json={"state": "resolved", "resolution": "restarted"},
        headers=actors.ops,
    )
    ok(resolved)
    open_record(client, actors, "change", "depot")
    open_record(client, actors, "incident", None)
    return {"shop": shop["id"], "depot": depot["id"], "annex": annex["id"]}


def test_the_incidents_are_the_records_not_the_audit_signals(
    client: TestClient, actors: Actors, fleet: dict[str, str]
) -> None:
    report = ok(client.get(KPIS, headers=actors.gov))
    rows = {t["name"]: t for t in report["tenants"]}
    shop = rows["shop"]
    # The suspension's P2 incident (open: the isolation is stuck) and the resolved one.
    assert (shop["incidents"], shop["open_incidents"], shop["suspensions"]) == (2, 1, 1)
    # A change is not an incident; another tenant's records are not depot's.
    assert (rows["depot"]["incidents"], rows["depot"]["open_incidents"]) == (0, 0)
    assert rows["annex"]["incidents"] == 0
    overall = report["overall"]
    assert (overall["incidents"], overall["open_incidents"]) == (3, 2)
    assert (overall["platform_incidents"], overall["platform_open_incidents"]) == (1, 1)
    assert overall["suspensions"] == 1


def test_the_counts_are_what_the_records_listing_shows(
    client: TestClient, actors: Actors, fleet: dict[str, str]
) -> None:
    report = ok(client.get(KPIS, headers=actors.gov))
    for row in report["tenants"]:
        name = row["name"]
        assert row["incidents"] == listed(client, actors, tenant=name), name
        assert row["open_incidents"] == listed(client, actors, tenant=name, open_only=True), name
    assert report["overall"]["incidents"] == listed(client, actors)
    assert report["overall"]["open_incidents"] == listed(client, actors, open_only=True)


def test_a_narrowed_view_counts_its_tenants_only(
    client: TestClient, actors: Actors, auth: TokenFactory, fleet: dict[str, str]
) -> None:
    premium = ok(client.get(KPIS, params={"tier": "premium"}, headers=actors.gov))["overall"]
    assert (premium["incidents"], premium["open_incidents"], premium["platform_incidents"]) == (
        2,
        1,
        None,
    )
    standard = ok(client.get(KPIS, params={"tier": "standard"}, headers=actors.gov))["overall"]
    assert (standard["incidents"], standard["platform_incidents"]) == (0, None)
    owner = auth("olga", "tenant_owner", tenant=fleet["shop"])
    own = ok(client.get(KPIS, headers=owner))
    assert [t["name"] for t in own["tenants"]] == ["shop"]
    assert (own["overall"]["incidents"], own["overall"]["platform_incidents"]) == (2, None)
    rival = auth("rita", "tenant_owner", tenant=fleet["depot"])
    assert ok(client.get(KPIS, headers=rival))["overall"]["incidents"] == 0


def test_open_incidents_sort_the_table(
    client: TestClient, actors: Actors, fleet: dict[str, str]
) -> None:
    rows = ok(client.get(KPIS, params={"sort": "-open_incidents"}, headers=actors.gov))["tenants"]
    # Ties (none open) by name, the same way.
    assert [t["name"] for t in rows] == ["shop", "depot", "annex"]
