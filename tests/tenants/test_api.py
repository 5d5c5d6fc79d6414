"""The tenant API as a client meets it: validation, idempotency, listing, ETags, errors."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantops.errors import Unprocessable
from tenantops.kit.etag import parse_if_match
from tenantops.tenants.lifecycle import TenantState
from tests.conftest import Actors, TokenFactory
from tests.factories import tenant_body
from tests.flows import decide, problem, request_tenant, tenant_in


@pytest.fixture
def am(actors: Actors) -> dict[str, str]:
    return actors.am


def _problem(response: Any, status: int) -> dict[str, Any]:
    body = problem(response, status)
    assert body["type"].startswith("https://")
    assert body["title"]
    assert body["detail"]
    return body


# --- POST /tenants: validation ------------------------------------------------

UUID_NAME = "01900000-0000-7000-8000-000000000000"

INVALID = [
    ("name", "a" * 64, "name"),
    ("name", "Acme", "name"),
    ("name", "-acme", "name"),
    ("name", "acme-", "name"),
    ("name", "ac_me", "name"),
    ("name", "ac.me", "name"),
    ("name", "", "name"),
    ("name", 42, "name"),
    ("name", UUID_NAME, "name"),
    ("display_name", "   ", "display_name"),
    ("business_owner", "not-an-email", "business_owner"),
    ("business_owner", "owner@", "business_owner"),
    ("contacts", ["ops@acme.example", "nobody"], "contacts.1"),
    ("contacts", "ops@acme.example", "contacts"),
    ("compliance_classification", "secret", "compliance_classification"),
    ("compliance_classification", "Public", "compliance_classification"),
    ("region", "EU Central", "region"),
    ("currency", "ABC", "currency"),
    ("currency", "eur", "currency"),
    ("currency", "EURO", "currency"),
    ("monthly_budget", -1, "monthly_budget"),
    ("monthly_budget", -0.01, "monthly_budget"),
    ("monthly_budget", "lots", "monthly_budget"),
    ("monthly_budget", 10.005, "monthly_budget"),
    ("monthly_budget", True, "monthly_budget"),
    ("colour", "blue", "colour"),
]


@pytest.mark.parametrize(
    ("field", "value", "where"), INVALID, ids=[f"{f}={v!r}"[:40] for f, v, _ in INVALID]
)
def test_invalid_field_is_422_naming_it(
    client: TestClient, am: dict[str, str], field: str, value: Any, where: str
) -> None:
    response = client.post("/api/v1/tenants", json=tenant_body(**{field: value}), headers=am)
    problem = _problem(response, 422)
    assert problem["detail"].startswith(f"{where}: "), problem["detail"]
    assert problem["errors"][0]["loc"] == ["body", *where.split(".")]
    assert client.get("/api/v1/tenants", headers=am).json()["items"] == []


def test_missing_field_and_non_object_body(client: TestClient, am: dict[str, str]) -> None:
    body = tenant_body()
    del body["business_owner"]
    problem = _problem(client.post("/api/v1/tenants", json=body, headers=am), 422)
    assert problem["detail"] == "business_owner: Field required"
    _problem(client.post("/api/v1/tenants", json=[body], headers=am), 422)
    _problem(
        client.post(
            "/api/v1/tenants",
            content=b"{not json",
            headers={**am, "content-type": "application/json"},
        ),
        422,
    )


def test_messages_a_person_understands(client: TestClient, am: dict[str, str]) -> None:
    def detail(**overrides: Any) -> str:
        response = client.post("/api/v1/tenants", json=tenant_body(**overrides), headers=am)
        text: str = _problem(response, 422)["detail"]
        return text

    assert "not an ISO 4217 currency code" in detail(currency="ABC")
    assert "must not look like a tenant id" in detail(name=UUID_NAME)
    assert "greater than or equal to 0" in detail(monthly_budget=-1)
    assert "Extra inputs are not permitted" in detail(colour="blue")


def test_valid_edges_are_accepted(client: TestClient, am: dict[str, str]) -> None:
    longest = request_tenant(client, am, name="a" * 63, monthly_budget=0, contacts=[])
    assert (longest["name"], longest["monthly_budget"], longest["contacts"]) == ("a" * 63, 0, [])
    single = request_tenant(client, am, name="a", currency="CHF", monthly_budget="12.50")
    assert (single["currency"], single["monthly_budget"]) == ("CHF", 12.5)
    mixed = request_tenant(
        client,
        am,
        name="x-1-y",
        business_owner="Owner@ACME.example",
        contacts=["Ops@ACME.example"],
        compliance_classification="restricted",
        ticket_ref=None,
    )
    assert mixed["business_owner"] == "owner@acme.example"
    assert mixed["contacts"] == ["ops@acme.example"]
    assert mixed["state"] == "requested"
    assert mixed["requested_by"] == "amy"


def test_create_answers_201_with_the_tenant(client: TestClient, am: dict[str, str]) -> None:
    body = tenant_body(name="acme")
    response = client.post("/api/v1/tenants", json=body, headers=am)
    assert response.status_code == 201, response.text
    tenant = response.json()
    assert response.headers["location"] == f"/api/v1/tenants/{tenant['id']}"
    assert response.headers["etag"] == f'"{tenant["version"]}"'
    assert "idempotent-replayed" not in response.headers
    assert tenant["state"] == "requested"
    for field in ("name", "display_name", "region", "tier", "currency", "ticket_ref"):
        assert tenant[field] == body[field]
    assert tenant["monthly_budget"] == body["monthly_budget"]


def test_duplicate_name_is_409(client: TestClient, am: dict[str, str]) -> None:
    request_tenant(client, am, name="acme")
    response = client.post("/api/v1/tenants", json=tenant_body(name="acme"), headers=am)
    problem = _problem(response, 409)
    assert problem["detail"] == "a tenant named 'acme' already exists"
    assert problem["param"] == "name"
    assert len(client.get("/api/v1/tenants", headers=am).json()["items"]) == 1


# --- Idempotency-Key ------------------------------------------------------------


def test_same_key_same_body_gives_the_same_tenant(
    client: TestClient, am: dict[str, str], actors: Actors
) -> None:
    body = tenant_body(name="acme")
    headers = {**am, "Idempotency-Key": "intake-42"}
    first = client.post("/api/v1/tenants", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = client.post("/api/v1/tenants", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert [t["id"] for t in client.get("/api/v1/tenants", headers=am).json()["items"]] == [
        first.json()["id"]
    ]
    trail = client.get(
        "/api/v1/audit",
        params={"action": "tenant.requested"},
        headers=actors.auditor,
    ).json()["items"]
    assert len(trail) == 1


def test_same_key_other_body_is_422(client: TestClient, am: dict[str, str]) -> None:
    headers = {**am, "Idempotency-Key": "intake-43"}
    body = tenant_body(name="acme")
    assert client.post("/api/v1/tenants", json=body, headers=headers).status_code == 201
    other = {**body, "monthly_budget": 9999}
    problem = _problem(client.post("/api/v1/tenants", json=other, headers=headers), 422)
    assert problem["type"].endswith("/idempotency-key-reused")
    assert "already used for a different request body" in problem["detail"]
    # A different key is a different request: here it collides on the name.
    fresh = {**am, "Idempotency-Key": "intake-44"}
    _problem(client.post("/api/v1/tenants", json=other, headers=fresh), 409)
    assert len(client.get("/api/v1/tenants", headers=am).json()["items"]) == 1


def test_idempotency_keys_belong_to_their_caller(
    client: TestClient, am: dict[str, str], auth: TokenFactory
) -> None:
    key = {"Idempotency-Key": "shared"}
    client.post("/api/v1/tenants", json=tenant_body(name="one"), headers={**am, **key})
    other = auth("ann", "account_manager")
    response = client.post(
        "/api/v1/tenants", json=tenant_body(name="two"), headers={**other, **key}
    )
    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers
    assert response.json()["name"] == "two"


# --- GET /tenants ----------------------------------------------------------------


def _names(client: TestClient, who: dict[str, str], **params: Any) -> set[str]:
    response = client.get("/api/v1/tenants", params=params, headers=who)
    assert response.status_code == 200, response.text
    return {t["name"] for t in response.json()["items"]}


def test_list_filters(client: TestClient, am: dict[str, str], actors: Actors) -> None:
    request_tenant(client, am, name="alpha", region="eu-central-1", tier="standard")
    request_tenant(client, am, name="bravo", region="us-east-1", tier="premium")
    request_tenant(
        client, am, name="charlie", region="eu-central-1", tier="premium", business_owner="c@x.io"
    )
    delta = request_tenant(client, am, name="delta", region="us-east-1", tier="standard")
    rejected = decide(client, delta["id"], "governance", actors.gov, "reject")
    assert rejected.json()["state"] == "rejected"

    assert _names(client, am) == {"alpha", "bravo", "charlie", "delta"}
    assert _names(client, am, state="requested") == {"alpha", "bravo", "charlie"}
    assert _names(client, am, state="rejected") == {"delta"}
    assert _names(client, am, state="active") == set()
    assert _names(client, am, region="eu-central-1") == {"alpha", "charlie"}
    assert _names(client, am, tier="premium") == {"bravo", "charlie"}
    assert _names(client, am, owner="c@x.io") == {"charlie"}
    assert _names(client, am, owner="C@X.IO") == {"charlie"}
    assert _names(client, am, region="us-east-1", tier="standard") == {"delta"}
    assert _names(client, am, region="us-east-1", state="requested") == {"bravo"}
    assert _names(client, am, region="ap-south-1") == set()
    _problem(client.get("/api/v1/tenants", params={"state": "sleeping"}, headers=am), 422)
    _problem(client.get("/api/v1/tenants", params={"limit": 0}, headers=am), 422)
    _problem(client.get("/api/v1/tenants", params={"limit": 201}, headers=am), 422)


def test_list_text_search(client: TestClient, am: dict[str, str]) -> None:
    request_tenant(
        client, am, name="globex", display_name="Globex Corporation", business_owner="h@g.io"
    )
    request_tenant(
        client, am, name="initech", display_name="Initech 100% Cloud", business_owner="b@i.io"
    )
    request_tenant(
        client, am, name="umbrella", display_name="Umbrella_Ops", business_owner="w@u.io"
    )

    assert _names(client, am, q="glob") == {"globex"}  # name
    assert _names(client, am, q="CORPORATION") == {"globex"}  # display name, any case
    assert _names(client, am, q="b@i.io") == {"initech"}  # owner
    assert _names(client, am, q="e") == {"globex", "initech", "umbrella"}
    # LIKE wildcards are literal text, not patterns.
    assert _names(client, am, q="%") == {"initech"}
    assert _names(client, am, q="_") == {"umbrella"}
    assert _names(client, am, q="nothing-like-this") == set()
    assert _names(client, am, q="e", tier="standard") == {"globex", "initech", "umbrella"}


def test_cursor_pagination_visits_each_tenant_once(client: TestClient, am: dict[str, str]) -> None:
    created = {
        request_tenant(client, am, region="eu-west-1" if n % 2 else "eu-north-1")["id"]
        for n in range(7)
    }
    for params, expected_total in [({}, 7), ({"region": "eu-west-1"}, 3)]:
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
            response = client.get("/api/v1/tenants", params=query, headers=am)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= 2
            seen += [t["id"] for t in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == expected_total
        assert set(seen) <= created
        assert pages == (expected_total + 1) // 2
        assert seen == sorted(seen, reverse=True)  # newest first
    everything = client.get("/api/v1/tenants", params={"limit": 7}, headers=am).json()
    assert {t["id"] for t in everything["items"]} == created
    assert everything["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["garbage", "YWJj", "!!!!", "bm90LWFuLWlk", "%%%"])
def test_bad_cursor_is_422(client: TestClient, am: dict[str, str], cursor: str) -> None:
    request_tenant(client, am)
    response = client.get("/api/v1/tenants", params={"cursor": cursor}, headers=am)
    problem = _problem(response, 422)
    assert problem["param"] == "cursor"
    assert problem["detail"] == "the cursor is not one this API issued"


# --- GET /tenants/{id} and ETags ------------------------------------------------------


def test_get_by_id_and_by_name(client: TestClient, am: dict[str, str]) -> None:
    tenant = request_tenant(client, am, name="acme")
    by_id = client.get(f"/api/v1/tenants/{tenant['id']}", headers=am)
    by_name = client.get("/api/v1/tenants/acme", headers=am)
    assert by_id.status_code == by_name.status_code == 200
    assert by_id.json() == by_name.json() == tenant
    assert by_id.headers["etag"] == by_name.headers["etag"] == f'"{tenant["version"]}"'
    problem = _problem(client.get("/api/v1/tenants/nope", headers=am), 404)
    assert problem["detail"] == "no tenant 'nope'"


def test_if_match_guards_state_changes(
    client: TestClient, am: dict[str, str], actors: Actors
) -> None:
    tid = tenant_in(client, actors, TenantState.ACTIVE)["id"]
    ops = actors.ops
    read = client.get(f"/api/v1/tenants/{tid}", headers=am)
    etag = read.headers["etag"]
    assert etag == f'"{read.json()["version"]}"'

    suspend = {"reason": "unpaid"}
    stale = f'"{read.json()["version"] - 1}"'
    problem = _problem(
        client.post(
            f"/api/v1/tenants/{tid}/suspend", json=suspend, headers={**ops, "If-Match": stale}
        ),
        412,
    )
    assert problem["current_version"] == read.json()["version"]
    assert "read it again and retry" in problem["detail"]
    assert client.get(f"/api/v1/tenants/{tid}", headers=am).json()["state"] == "active"

    for garbage in ["garbage", '"three"', '"-1"', '"1.5"']:
        problem = _problem(
            client.post(
                f"/api/v1/tenants/{tid}/suspend", json=suspend, headers={**ops, "If-Match": garbage}
            ),
            422,
        )
        assert problem["param"] == "If-Match"

    done = client.post(
        f"/api/v1/tenants/{tid}/suspend", json=suspend, headers={**ops, "If-Match": etag}
    )
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "suspended"
    assert done.headers["etag"] != etag
    assert done.headers["etag"] == client.get(f"/api/v1/tenants/{tid}", headers=am).headers["etag"]

    # The ETag read before the change is now stale for the next change too.
    problem = _problem(
        client.post(
            f"/api/v1/tenants/{tid}/offboard",
            json={"reason": "x"},
            headers={**am, "If-Match": etag},
        ),
        412,
    )
    # "*" means "whatever the current version is".
    response = client.post(
        f"/api/v1/tenants/{tid}/offboard", json={"reason": "x"}, headers={**am, "If-Match": "*"}
    )
    assert response.json()["state"] == "offboarding"


def test_a_recorded_approval_moves_the_etag(
    client: TestClient, am: dict[str, str], actors: Actors
) -> None:
    tenant = request_tenant(client, am)
    etag = client.get(f"/api/v1/tenants/{tenant['id']}", headers=am).headers["etag"]
    url = f"/api/v1/tenants/{tenant['id']}/approvals"
    first = client.post(
        url,
        json={"role": "governance", "decision": "approve"},
        headers={**actors.gov, "If-Match": etag},
    )
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "requested"
    # The security approver read the tenant before governance decided: stale.
    _problem(
        client.post(
            url,
            json={"role": "security", "decision": "approve"},
            headers={**actors.sec, "If-Match": etag},
        ),
        412,
    )
    again = client.post(
        url,
        json={"role": "security", "decision": "approve"},
        headers={**actors.sec, "If-Match": first.headers["etag"]},
    )
    assert again.json()["state"] == "approved"


@pytest.mark.parametrize(
    ("header", "version"),
    [(None, None), ("*", None), (' "7" ', 7), ('W/"7"', 7), ("7", 7)],
)
def test_if_match_header_forms(header: str | None, version: int | None) -> None:
    assert parse_if_match(header) == version


@pytest.mark.parametrize("header", ["", '""', '"²"', '"٣"', '"1,2"', '"0x1"'])
def test_if_match_header_garbage(header: str) -> None:
    with pytest.raises(Unprocessable):
        parse_if_match(header)


# --- errors outside the routes ----------------------------------------------------


def test_unknown_route_is_404_problem(client: TestClient, am: dict[str, str]) -> None:
    for path in ["/api/v1/nothing-here", "/nope", "/api/v1/tenants/acme/frobnicate"]:
        problem = _problem(client.get(path, headers=am), 404)
        assert problem["title"] == "Not found"


WRONG_METHODS = [
    ("DELETE", "/api/v1/tenants", {"GET", "POST"}),
    ("PUT", "/api/v1/tenants/{id}", {"GET"}),
    ("GET", "/api/v1/tenants/{id}/suspend", {"POST"}),
]


def test_wrong_method_is_405_problem(client: TestClient, am: dict[str, str]) -> None:
    tenant = request_tenant(client, am)
    for method, path, _allowed in WRONG_METHODS:
        response = client.request(method, path.format(id=tenant["id"]), headers=am)
        problem = _problem(response, 405)
        assert problem["title"] == "Method not allowed"
        assert "allow" in response.headers
    assert client.get(f"/api/v1/tenants/{tenant['id']}", headers=am).json()["state"] == "requested"


def test_405_allow_names_every_method_served(client: TestClient, am: dict[str, str]) -> None:
    tenant = request_tenant(client, am)
    for method, path, allowed in WRONG_METHODS:
        response = client.request(method, path.format(id=tenant["id"]), headers=am)
        assert response.status_code == 405
        offered = {m.strip() for m in response.headers["allow"].split(",")} - {"HEAD"}
        assert offered == allowed, (method, path, response.headers["allow"])
