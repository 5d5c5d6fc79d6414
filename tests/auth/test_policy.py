"""The route × role table, checked against every route the app actually serves.

The cases are generated from the app itself (its OpenAPI paths plus the routes
that are not in the schema), so a route added without an entry in
``ROUTE_ROLES`` or ``PUBLIC_ROUTES`` fails here, and so does a table entry whose
route is gone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response

from tenantops.app import create_app
from tenantops.auth.policy import (
    PUBLIC_ROUTES,
    ROUTE_ROLES,
    SELF_AUTHENTICATED_ROUTES,
    WEB_PAGES,
)
from tenantops.auth.principal import Principal, Role
from tenantops.config import OIDCSettings, Settings
from tenantops.db import Database
from tests.conftest import TokenFactory
from tests.factories import tenant_body

HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"}
DUMMY_TENANT = "0000dead-0000-7000-8000-000000000000"


def served_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the app answers; mounts and sockets as ``ANY``."""
    routes: set[tuple[str, str]] = set()
    for path, operations in app.openapi()["paths"].items():
        routes.update((m.upper(), path) for m in operations if m.upper() in HTTP_METHODS)
    # FastAPI keeps included routers as nested entries of app.routes; this walks them.
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            continue  # already in the schema, under its full path
        path = context.path or repr(context.route)
        methods = context.methods
        if not methods:
            routes.add(("ANY", path))  # a mount or a websocket: it needs a decision too
            continue
        routes.update((m, path) for m in methods if not (m == "HEAD" and "GET" in methods))
    return sorted(routes)


def _listing_app() -> FastAPI:
    db = Database("sqlite://")  # never connected: only the routes are read
    app = create_app(Settings(data_dir=Path("unused"), oidc=OIDCSettings()), db=db)
    db.dispose()
    return app


ROUTES = served_routes(_listing_app())
# Web pages check the session cookie themselves (tests/web covers them).
PROTECTED = [r for r in ROUTES if r not in PUBLIC_ROUTES | SELF_AUTHENTICATED_ROUTES | WEB_PAGES]
PUBLIC = [r for r in ROUTES if r in PUBLIC_ROUTES]
SELF_AUTHENTICATED = [r for r in ROUTES if r in SELF_AUTHENTICATED_ROUTES]


def route_id(route: tuple[str, str]) -> str:
    return f"{route[0]} {route[1]}"


def call(client: TestClient, route: tuple[str, str], headers: dict[str, str]) -> Response:
    """Call a route with dummy path values (and an empty JSON body where one may go)."""
    method, template = route
    url = re.sub(r"\{[^}]+\}", lambda m: "no-such-" + m.group(0)[1:-1].split(":")[0], template)
    kwargs: dict[str, Any] = {"headers": headers}
    if method in {"POST", "PUT", "PATCH"}:
        kwargs["json"] = {}
    return client.request(method, url, **kwargs)


def token_of(auth: TokenFactory, role: Role) -> dict[str, str]:
    """A token holding only ``role`` (a tenant owner's is bound to some tenant)."""
    tenant = DUMMY_TENANT if role is Role.TENANT_OWNER else None
    return auth(f"only-{role.value}", role.value, tenant=tenant)


def test_the_app_serves_the_routes_we_expect_to_find() -> None:
    assert ("GET", "/api/v1/tenants") in ROUTES
    assert ("GET", "/docs") in ROUTES  # found through app.routes, not the schema
    assert len(PROTECTED) >= 10


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_every_route_has_exactly_one_policy_entry(route: tuple[str, str]) -> None:
    entries = [
        route in ROUTE_ROLES,
        route in PUBLIC_ROUTES,
        route in SELF_AUTHENTICATED_ROUTES,
        route in WEB_PAGES,
    ]
    assert any(entries), (
        f"{route_id(route)} has no entry in tenantops.auth.policy: add it to ROUTE_ROLES "
        "(who may call it), to PUBLIC_ROUTES if anyone may, or to SELF_AUTHENTICATED_ROUTES "
        "if it checks a credential of its own"
    )
    assert entries.count(True) == 1, f"{route_id(route)} has more than one policy entry"


def test_the_table_names_only_routes_that_exist() -> None:
    known = set(ROUTE_ROLES) | PUBLIC_ROUTES | SELF_AUTHENTICATED_ROUTES | WEB_PAGES
    stale = sorted(known - set(ROUTES))
    assert stale == [], f"policy entries for routes the app does not serve: {stale}"


@pytest.mark.parametrize("route", PUBLIC, ids=route_id)
def test_public_routes_answer_without_a_token(client: TestClient, route: tuple[str, str]) -> None:
    r = call(client, route, {})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("route", SELF_AUTHENTICATED, ids=route_id)
def test_self_authenticated_routes_refuse_a_caller_without_their_credential(
    client: TestClient, route: tuple[str, str]
) -> None:
    """401 without the credential, or 503 while none is configured: never open."""
    r = call(client, route, {})
    assert r.status_code in (401, 503), r.text
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
def test_each_protected_route_refuses_no_token_and_gives_each_role_what_the_table_says(
    client: TestClient, auth: TokenFactory, route: tuple[str, str]
) -> None:
    """One app per route, every role against it (an app per role and route was 1,500 apps)."""
    r = call(client, route, {})
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"

    wrong: list[str] = []
    for role in Role:
        r = call(client, route, token_of(auth, role))
        if r.status_code >= 500:
            wrong.append(f"{role.value}: {r.status_code} {r.text}")
        elif role in ROUTE_ROLES.get(route, frozenset()):
            if r.status_code in (401, 403):
                wrong.append(f"{role.value} may call it but got {r.status_code}: {r.text}")
        elif r.status_code != 403:
            wrong.append(f"{role.value} may not call it but got {r.status_code}: {r.text}")
        elif r.headers["content-type"] != "application/problem+json" or not r.json()[
            "type"
        ].endswith("/forbidden"):
            wrong.append(f"{role.value}: a 403 that is not a forbidden problem: {r.text}")
    assert wrong == [], f"{route_id(route)}:\n" + "\n".join(wrong)


# A tenant owner never sees another tenant -------------------------------------------------


@pytest.mark.parametrize("other", [r for r in Role if r is not Role.TENANT_OWNER])
def test_a_tenant_owner_without_a_tenant_sees_none_whatever_else_it_holds(other: Role) -> None:
    principal = Principal(subject="x", roles=frozenset({Role.TENANT_OWNER, other}))
    assert principal.tenant_scoped
    assert not principal.can_see("some-id", "some-name")


def test_a_principal_bound_to_a_tenant_sees_it_by_id_or_name() -> None:
    principal = Principal(subject="x", roles=frozenset({Role.TENANT_OWNER}), tenant="acme")
    assert principal.can_see("some-id", "acme")
    assert not principal.can_see("acme-2", "acme-2")


@pytest.fixture
def two_tenants(client: TestClient, auth: TokenFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    am = auth("amy", "account_manager")
    mine = client.post("/api/v1/tenants", json=tenant_body(name="mine"), headers=am)
    theirs = client.post(
        "/api/v1/tenants",
        json=tenant_body(name="theirs", display_name="Theirs Secret Project"),
        headers=am,
    )
    assert mine.status_code == theirs.status_code == 201
    return mine.json(), theirs.json()


@pytest.fixture
def owner(
    auth: TokenFactory, two_tenants: tuple[dict[str, Any], dict[str, Any]], bound_by: str
) -> dict[str, str]:
    """A tenant owner bound to the first of ``two_tenants`` by its ``bound_by`` (id or name)."""
    mine, _ = two_tenants
    return auth("olga", "tenant_owner", tenant=mine[bound_by])


@pytest.mark.parametrize("bound_by", ["id", "name"])
def test_a_tenant_owner_sees_only_its_own_tenant(
    client: TestClient,
    two_tenants: tuple[dict[str, Any], dict[str, Any]],
    owner: dict[str, str],
) -> None:
    mine, theirs = two_tenants

    r = client.get(f"/api/v1/tenants/{mine['id']}", headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "mine"
    assert client.get("/api/v1/tenants/mine", headers=owner).status_code == 200
    approvals = client.get(f"/api/v1/tenants/{mine['id']}/approvals", headers=owner)
    assert approvals.status_code == 200, approvals.text
    assert len(approvals.json()) == 1

    listed = client.get("/api/v1/tenants", headers=owner).json()
    assert [t["id"] for t in listed["items"]] == [mine["id"]]
    assert listed["next_cursor"] is None
    searched = client.get("/api/v1/tenants", params={"q": theirs["name"]}, headers=owner).json()
    assert searched["items"] == []


@pytest.mark.parametrize("bound_by", ["id", "name"])
@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/approvals", None),
        ("POST", "/reactivation-requests", {"reason": "please"}),
    ],
    ids=["tenant", "approvals", "reactivation-request"],
)
@pytest.mark.parametrize("ref", ["id", "name"])
def test_another_tenant_is_404_as_if_it_did_not_exist(
    client: TestClient,
    two_tenants: tuple[dict[str, Any], dict[str, Any]],
    owner: dict[str, str],
    method: str,
    suffix: str,
    body: dict[str, str] | None,
    ref: str,
) -> None:
    _, theirs = two_tenants

    r = client.request(method, f"/api/v1/tenants/{theirs[ref]}{suffix}", json=body, headers=owner)
    absent = client.request(method, f"/api/v1/tenants/nobody{suffix}", json=body, headers=owner)

    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/problem+json"
    for leak in (theirs["display_name"], theirs["business_owner"], theirs["state"]):
        assert leak not in r.text
    assert (r.json()["type"], r.json()["title"]) == (absent.json()["type"], absent.json()["title"])
