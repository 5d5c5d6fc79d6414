"""The overall budget is what the platform carries: tenants that hold a budget, no others.

A new user's fleet summed to 3620 EUR: 2500 of an archived tenant, 100 of a rejected
one and 2 × 10 of requests, beside the 1000 of the one active tenant. Each row still
shows its own budget; only the overall figure leaves them out.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from tenantops.db import Database
from tenantops.kpis.queries import HOLDS_BUDGET
from tenantops.tenants.lifecycle import TenantState as S
from tests.conftest import Actors, TokenFactory
from tests.flows import ok, request_tenant, tenant_in
from tests.web.test_kpis import T0, Rows

KPIS = "/api/v1/kpis"

pytestmark = pytest.mark.usefixtures("clock")


def test_a_tenant_holds_a_budget_from_its_approval_until_it_is_archived() -> None:
    # A request's budget is asked for, not granted; a rejected or archived tenant has none;
    # suspended or offboarding, a tenant still runs and still has one.
    assert {
        S.APPROVED,
        S.PROVISIONING,
        S.PROVISIONING_FAILED,
        S.VERIFYING,
        S.ACTIVE,
        S.SUSPENDED,
        S.OFFBOARDING,
    } == HOLDS_BUDGET


@pytest.fixture
def fleet(client: TestClient, actors: Actors) -> dict[str, str]:
    """The user's fleet, through the real lifecycle, and a suspended and an offboarding
    tenant, which still hold theirs: 1000 + 300 + 40 EUR carried."""
    made = {
        "old": tenant_in(client, actors, S.ARCHIVED, name="old", monthly_budget=2500),
        "no": tenant_in(client, actors, S.REJECTED, name="no", monthly_budget=100),
        "ask-1": request_tenant(client, actors.am, name="ask-1", monthly_budget=10),
        "ask-2": request_tenant(client, actors.am, name="ask-2", monthly_budget=10),
        "live": tenant_in(client, actors, S.ACTIVE, name="live", monthly_budget=1000),
        "paused": tenant_in(client, actors, S.SUSPENDED, name="paused", monthly_budget=300),
        "leaving": tenant_in(client, actors, S.OFFBOARDING, name="leaving", monthly_budget=40),
    }
    return {name: tenant["id"] for name, tenant in made.items()}


def test_the_budget_total_counts_only_the_tenants_that_hold_one(
    client: TestClient, actors: Actors, fleet: dict[str, str]
) -> None:
    report = ok(client.get(KPIS, headers=actors.gov))
    assert report["overall"]["budget"] == {"EUR": "1340.00"}
    assert report["overall"]["tenants"] == 7
    # Every row shows its own budget, held or not.
    rows = {t["name"]: t["budget"] for t in report["tenants"]}
    assert rows == {
        "old": "2500.00",
        "no": "100.00",
        "ask-1": "10.00",
        "ask-2": "10.00",
        "live": "1000.00",
        "paused": "300.00",
        "leaving": "40.00",
    }
    # Staff who may not read cost see the same budget total.
    assert ok(client.get(KPIS, headers=actors.qa))["overall"]["budget"] == {"EUR": "1340.00"}


@pytest.mark.parametrize(
    ("state", "total"),
    [("archived", {}), ("requested", {}), ("suspended", {"EUR": "300.00"})],
)
def test_a_view_of_one_state_totals_what_that_state_holds(
    client: TestClient,
    actors: Actors,
    fleet: dict[str, str],
    state: str,
    total: dict[str, str],
) -> None:
    report = ok(client.get(KPIS, params={"state": state}, headers=actors.gov))
    assert report["overall"]["budget"] == total
    assert report["tenants"]
    assert all(Decimal(t["budget"]) > 0 for t in report["tenants"])


def test_the_owner_of_an_archived_tenant_sees_its_budget_but_no_total(
    client: TestClient, auth: TokenFactory, fleet: dict[str, str]
) -> None:
    owner = auth("olga", "tenant_owner", tenant=fleet["old"])
    report = ok(client.get(KPIS, headers=owner))
    assert [t["budget"] for t in report["tenants"]] == ["2500.00"]
    assert report["overall"]["budget"] == {}


def test_the_cost_total_keeps_a_currency_no_tenant_holds_a_budget_in_any_more(
    client: TestClient, actors: Actors, db: Database
) -> None:
    """An archived tenant's spend this month is money spent: the cost total counts it,
    even in a currency whose only budget was the archived tenant's."""
    r = Rows()
    r.tenant("gone", T0, state="archived", currency="USD")
    r.tenant("here", T0)
    r.tenant("asked", T0, state="requested")
    r.cost("gone", "30")
    r.cost("gone", "30", currency="USD")
    r.cost("here", "12.50")
    r.write(db)
    overall = ok(client.get(KPIS, headers=actors.gov))["overall"]
    assert overall["budget"] == {"EUR": "100.00"}  # here's; not asked's, not gone's
    assert overall["cost_mtd"] == {"EUR": "12.50", "USD": "30.00"}
