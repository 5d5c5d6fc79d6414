"""The KPI service and ``GET /api/v1/kpis``; the dashboard shows the API's numbers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantops.web.kpis import percentile
from tests.conftest import Actors, Clock, TokenFactory
from tests.finops.focusdata import tagged, write_csv
from tests.flows import approve, ok, request_tenant, step, suspend
from tests.web.conftest import UserFactory, sign_in

KPIS = "/api/v1/kpis"


def activate(client: TestClient, actors: Actors, tenant: str) -> None:
    step(client, tenant, "start_provisioning", actors.ops)
    step(client, tenant, "provisioned", actors.ops)
    step(client, tenant, "verified", actors.qa)


@pytest.fixture
def fleet(
    web: TestClient, actors: Actors, auth: TokenFactory, clock: Clock, tmp_path: Path
) -> dict[str, str]:
    """alpha: active 5 min after approval; beta: active 40 min after, then suspended;
    gamma: only requested. alpha has 60 EUR of cost this month against 100."""
    ids: dict[str, str] = {}
    alpha = request_tenant(web, actors.am, name="alpha", tier="gold", monthly_budget=100)
    ids["alpha"] = alpha["id"]
    clock.advance(minutes=10)
    approve(web, ids["alpha"], "governance", actors.gov)
    approve(web, ids["alpha"], "security", actors.sec)
    clock.advance(minutes=5)
    activate(web, actors, ids["alpha"])

    beta = request_tenant(web, actors.am, name="beta", region="us-east-1")
    ids["beta"] = beta["id"]
    approve(web, ids["beta"], "governance", actors.gov)
    approve(web, ids["beta"], "security", actors.sec)
    clock.advance(minutes=40)
    activate(web, actors, ids["beta"])
    ok(suspend(web, ids["beta"], actors.ops))

    ids["gamma"] = request_tenant(web, actors.am, name="gamma")["id"]
    finance = auth("fiona", "finance")
    path = write_csv(tmp_path / "jan.csv", [tagged("alpha", "60")])
    r = web.post(
        "/api/v1/finops/imports",
        content=path.read_bytes(),
        headers={**finance, "content-type": "text/csv"},
        params={"filename": path.name},
    )
    assert r.status_code == 201, r.text
    return ids


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in report["tenants"]}


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 90) == 4.0
    assert percentile([float(n) for n in range(1, 11)], 90) == 9.0


def test_the_kpis_of_a_small_fleet(web: TestClient, actors: Actors, fleet: dict[str, str]) -> None:
    report = ok(web.get(KPIS, headers=actors.gov))
    tenants = by_name(report)
    overall = report["overall"]

    assert report["month"] == "2030-01"
    assert overall["tenants"] == 3
    assert overall["by_state"] == {"active": 1, "requested": 1, "suspended": 1}
    assert tenants["alpha"]["activation_seconds"] == 15 * 60
    assert tenants["beta"]["activation_seconds"] == 40 * 60
    assert tenants["gamma"]["activation_seconds"] is None
    assert overall["activation_median_seconds"] == 15 * 60
    assert overall["activation_p90_seconds"] == 40 * 60
    assert tenants["alpha"]["provisioning_seconds"] == 5 * 60
    assert [tenants[n]["sla"] for n in ("alpha", "beta", "gamma")] == ["met", "missed", None]
    assert (overall["sla_met"], overall["sla_missed"], overall["sla_attainment"]) == (1, 1, 0.5)
    assert tenants["beta"]["suspensions"] == 1
    assert overall["suspensions"] == 1
    assert overall["incidents"] == 1  # beta's suspension
    assert tenants["alpha"]["cost_mtd"] == "60.00"
    assert tenants["alpha"]["budget"] == "100.00"
    assert tenants["alpha"]["budget_ratio"] == "0.6000"
    assert tenants["gamma"]["cost_mtd"] is None
    assert overall["cost_mtd"] == {"EUR": "60.00"}


def test_filters_and_sort(web: TestClient, actors: Actors, fleet: dict[str, str]) -> None:
    gold = ok(web.get(KPIS, params={"tier": "gold"}, headers=actors.gov))
    assert [t["name"] for t in gold["tenants"]] == ["alpha"]
    assert gold["overall"]["tenants"] == 1
    us = ok(web.get(KPIS, params={"region": "us-east-1"}, headers=actors.gov))
    assert [t["name"] for t in us["tenants"]] == ["beta"]
    requested = ok(web.get(KPIS, params={"state": "requested"}, headers=actors.gov))
    assert [t["name"] for t in requested["tenants"]] == ["gamma"]

    slowest = ok(web.get(KPIS, params={"sort": "-activation_seconds"}, headers=actors.gov))
    # A tenant without a value goes last either way.
    assert [t["name"] for t in slowest["tenants"]] == ["beta", "alpha", "gamma"]
    names = ok(web.get(KPIS, params={"sort": "-name"}, headers=actors.gov))
    assert [t["name"] for t in names["tenants"]] == ["gamma", "beta", "alpha"]

    bad = web.get(KPIS, params={"sort": "password"}, headers=actors.gov)
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


def test_a_tenant_owner_gets_only_their_tenant(
    web: TestClient, auth: TokenFactory, fleet: dict[str, str]
) -> None:
    owner = auth("olga", "tenant_owner", tenant=fleet["beta"])
    report = ok(web.get(KPIS, headers=owner))
    assert [t["name"] for t in report["tenants"]] == ["beta"]
    assert report["overall"]["tenants"] == 1
    assert report["overall"]["cost_mtd"] == {}
    assert ok(web.get(KPIS, params={"tier": "gold"}, headers=owner))["tenants"] == []


def test_the_kpis_need_a_token(web: TestClient) -> None:
    assert web.get(KPIS).status_code == 401


def _shown(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-kpi="([a-z0-9_]+)">([^<]*)<', page))


def test_the_dashboard_shows_the_apis_numbers(
    web: TestClient, actors: Actors, user: UserFactory, fleet: dict[str, str]
) -> None:
    user("gus-web", "governance")
    sign_in(web, "gus-web")
    for params in ({}, {"tier": "gold"}, {"state": "requested"}):
        page = web.get("/", params=params)
        assert page.status_code == 200, page.text
        api = ok(web.get(KPIS, params=params, headers=actors.gov))
        o = api["overall"]
        shown = _shown(page.text)
        assert shown["incidents"] == str(o["incidents"])
        assert shown["runs_in_progress"] == str(o["runs_in_progress"])
        assert shown["runs_stalled"] == str(o["runs_stalled"])
        attainment = o["sla_attainment"]
        assert shown["sla_attainment"] == (
            "–" if attainment is None else f"{round(attainment * 100, 1)}%"
        )
        cost = ", ".join(f"{v} {k}" for k, v in o["cost_mtd"].items()) or "–"
        assert shown["cost_mtd"] == cost
        rows = re.findall(r'<tr data-tenant="([^"]+)">', page.text)
        assert rows == [t["name"] for t in api["tenants"]]
        for t in api["tenants"]:
            row = page.text.split(f'<tr data-tenant="{t["name"]}">')[1].split("</tr>")[0]
            cells = dict(re.findall(r'data-col="([a-z]+)">([^<]*)<', row))
            assert cells["incidents"] == str(t["incidents"])
            assert cells["runs"] == str(t["runs_in_progress"])
            assert cells["sla"] == (t["sla"] or "–")
            assert cells["cost"] == (
                "–" if t["cost_mtd"] is None else f"{t['cost_mtd']} {t['currency']}"
            )


def test_the_dashboard_sorts_without_javascript(
    web: TestClient, user: UserFactory, fleet: dict[str, str]
) -> None:
    user("ann", "admin")
    sign_in(web, "ann")
    page = web.get("/", params={"sort": "-name"}).text
    assert re.findall(r'<tr data-tenant="([^"]+)">', page) == ["gamma", "beta", "alpha"]
    assert 'aria-sort="descending"' in page
    # The header link flips the order.
    assert 'href="?sort=name" data-sort="name"' in page
    # An unknown sort falls back to the name rather than failing the page.
    assert web.get("/", params={"sort": "bogus"}).status_code == 200


def test_a_tenant_owner_sees_only_their_tenant_on_the_dashboard(
    web: TestClient, user: UserFactory, fleet: dict[str, str]
) -> None:
    user("olga", "tenant_owner", tenant=fleet["alpha"])
    sign_in(web, "olga")
    page = web.get("/").text
    assert re.findall(r'<tr data-tenant="([^"]+)">', page) == ["alpha"]
    assert "beta" not in page
    assert "gamma" not in page


def test_a_limit_cuts_the_table_not_the_overall_numbers(
    web: TestClient, actors: Actors, fleet: dict[str, str]
) -> None:
    full = ok(web.get(KPIS, headers=actors.gov))
    cut = ok(web.get(KPIS, params={"limit": 1, "sort": "-name"}, headers=actors.gov))
    assert [t["name"] for t in cut["tenants"]] == ["gamma"]
    assert cut["truncated"] is True
    assert full["truncated"] is False
    assert cut["overall"] == full["overall"]


def test_cost_is_shown_only_to_those_who_may_read_it(
    web: TestClient, actors: Actors, fleet: dict[str, str]
) -> None:
    """Staff without a FinOps role see every KPI but cost, as the cost API refuses them."""
    report = ok(web.get(KPIS, headers=actors.qa))
    assert by_name(report)["alpha"]["cost_mtd"] is None
    assert by_name(report)["alpha"]["budget_ratio"] is None
    assert report["overall"]["cost_mtd"] == {}
    assert by_name(ok(web.get(KPIS, headers=actors.gov)))["alpha"]["cost_mtd"] == "60.00"


def test_a_filter_with_a_control_character_is_a_422(web: TestClient, actors: Actors) -> None:
    r = web.get(KPIS, params={"tier": "gold\x00"}, headers=actors.gov)
    assert r.status_code == 422, r.text
