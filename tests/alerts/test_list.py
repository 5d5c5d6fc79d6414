"""``GET /api/v1/alerts``: filters, paging and who may read it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.alerts.conftest import AM
from tests.alerts.payloads import alert, notification, resolved
from tests.conftest import Actors, TokenFactory

URL = "/api/v1/alerts"


@pytest.fixture
def received(receiver: TestClient, tenant: dict[str, str]) -> None:
    firing = alert(tenant["name"])
    for body in (
        notification(firing),
        notification(alert("stranger", alertname="QuotaNearlyFull")),
        notification(resolved(firing)),
    ):
        assert receiver.post("/api/v1/webhooks/alertmanager", json=body, headers=AM).is_success


def test_lists_newest_first_and_filters(
    receiver: TestClient, actors: Actors, tenant: dict[str, str], received: None
) -> None:
    items = receiver.get(URL, headers=actors.ops).json()["items"]
    assert [a["status"] for a in items] == ["resolved", "firing", "firing"]
    firing = receiver.get(URL, params={"status": "firing"}, headers=actors.ops).json()["items"]
    assert {a["alertname"] for a in firing} == {"TenantBudgetExceeded", "QuotaNearlyFull"}
    for ref in (tenant["name"], tenant["id"]):
        mine = receiver.get(URL, params={"tenant": ref}, headers=actors.ops).json()["items"]
        assert {a["tenant_id"] for a in mine} == {tenant["id"]}
        assert len(mine) == 2
    unknown = receiver.get(URL, params={"tenant": "stranger"}, headers=actors.ops).json()
    assert [a["tenant_id"] for a in unknown["items"]] == [None]


def test_pages_with_after(receiver: TestClient, actors: Actors, received: None) -> None:
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": 1, **({"after": after} if after else {})}
        page = receiver.get(URL, params=params, headers=actors.ops).json()
        seen += [a["id"] for a in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert len(seen) == 3 == len(set(seen))
    bad = receiver.get(URL, params={"after": "nonsense"}, headers=actors.ops)
    assert bad.status_code == 422


def test_staff_read_it_tenant_owners_do_not(
    receiver: TestClient, auth: TokenFactory, tenant: dict[str, str], received: None
) -> None:
    for role in ("finance", "security", "admin", "ops_engineer"):
        assert receiver.get(URL, headers=auth(f"r-{role}", role)).status_code == 200
    owner = auth("olga", "tenant_owner", tenant=tenant["id"])
    assert receiver.get(URL, headers=owner).status_code == 403
    assert receiver.get(URL).status_code == 401
