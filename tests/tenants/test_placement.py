"""A tenant is placed only where the platform runs: a tier it renders, a region it serves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tenantops.app import create_app
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.tenants import service as tenants
from tenantops.tenants.actions import ENGINE as RUNBOOK_ENGINE
from tenantops.tenants.lifecycle import TenantState
from tests.conftest import Actors, TokenFactory
from tests.factories import tenant_body
from tests.flows import problem, tenant_in

REGIONS = ["eu-central-1", "eu-west-1"]


@pytest.fixture
def served(db: Database, settings: Settings) -> Iterator[TestClient]:
    """The app of a platform that lists the regions it serves."""
    listed = settings.model_copy(update={"regions": REGIONS})
    with TestClient(create_app(listed, db=db), raise_server_exceptions=False) as c:
        yield c


def test_a_region_the_platform_does_not_serve_is_refused_and_nothing_is_created(
    served: TestClient, actors: Actors
) -> None:
    refused = problem(
        served.post("/api/v1/tenants", json=tenant_body(region="mars-north-9"), headers=actors.am),
        422,
    )
    assert refused["detail"] == (
        "region 'mars-north-9' is not one this platform serves (serves: eu-central-1, eu-west-1)"
    )
    assert served.get("/api/v1/tenants", headers=actors.am).json()["items"] == []
    made = served.post("/api/v1/tenants", json=tenant_body(region="eu-west-1"), headers=actors.am)
    assert made.status_code == 201, made.text


def test_any_region_name_is_accepted_when_none_are_listed(
    client: TestClient, actors: Actors
) -> None:
    made = client.post("/api/v1/tenants", json=tenant_body(region="ap-south-2"), headers=actors.am)
    assert made.status_code == 201, made.text


def test_a_tier_the_platform_does_not_render_is_refused(client: TestClient, actors: Actors) -> None:
    refused = problem(
        client.post("/api/v1/tenants", json=tenant_body(tier="platinum"), headers=actors.am), 422
    )
    assert refused["detail"].startswith("unknown tier 'platinum' (known: ")


def test_a_bad_region_in_the_list_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTOPS_REGIONS", '["EU Central"]')
    with pytest.raises(ValueError, match="regions"):
        Settings()


def test_a_new_tenant_request_for_an_unserved_region_is_refused_when_filed(
    served: TestClient, actors: Actors, auth: TokenFactory
) -> None:
    shop = tenant_in(served, actors, TenantState.ACTIVE, region="eu-west-1")
    owner = auth("olga", "tenant_owner", tenant=shop["name"])
    body = {
        "kind": "tenant",
        "name": "moon-shop",
        "tier": "basic",
        "compliance_classification": "internal",
        "justification": "a second shop",
    }
    url = f"/api/v1/tenants/{shop['id']}/requests"
    refused = problem(served.post(url, json={**body, "region": "mars-north-9"}, headers=owner), 422)
    assert refused["param"] == "region"
    filed = served.post(url, json={**body, "region": "eu-central-1"}, headers=owner)
    assert filed.status_code == 201, filed.text


def test_a_tier_change_to_a_tier_the_platform_does_not_render_is_refused(
    client: TestClient, actors: Actors
) -> None:
    tenant = tenant_in(client, actors, TenantState.ACTIVE)
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    with db.write() as session, pytest.raises(Unprocessable, match="unknown tier 'gold'"):
        tenants.change_tier(
            session, principal=RUNBOOK_ENGINE, ref=tenant["id"], tier="gold", reason="test"
        )
