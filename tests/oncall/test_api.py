"""``/api/v1/oncall``: the configuration, who is on call, pages; RBAC on every route and
RFC 9457 problems for what is refused."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.notify.local import OutboxNotifier
from tenantops.oncall import escalator, service
from tenantops.wiring import build_actions
from tests.conftest import Actors, Clock, TokenFactory
from tests.flows import ok, problem, request_tenant
from tests.oncall.test_escalation import DOCUMENT
from tests.oncall.test_pages import OLI

API = "/api/v1/oncall"


def with_routes(**changes: Any) -> dict[str, Any]:
    doc = {**DOCUMENT, **changes}
    doc["policies"] = {
        **DOCUMENT["policies"],
        "urgent": {"levels": [{"targets": ["role:oncall", "rotation:primary"], "after": "5m"}]},
    }
    return doc


def test_apply_show_and_who_is_on_call(client: TestClient, actors: Actors, clock: Clock) -> None:
    before = ok(client.get(API, headers=actors.gov))
    assert before["config"]["version"] is None  # the built-in default
    assert before["config"]["document"]["policies"]["default"]["levels"][0]["targets"] == [
        "role:oncall"
    ]
    applied = ok(client.put(f"{API}/config", json=DOCUMENT, headers=actors.ops))
    assert applied["changed"] is True
    assert applied["version"] == 1
    again = ok(client.put(f"{API}/config", json=DOCUMENT, headers=actors.admin))
    assert again["changed"] is False
    assert again["version"] == 1
    now = ok(client.get(API, headers=actors.auditor))["now"]
    assert [(s["rotation"], s["member"]) for s in now["shifts"]] == [
        ("primary", "alice@acme.example")
    ]
    later = ok(client.get(f"{API}/now", params={"at": "2030-01-08T08:30:00Z"}, headers=actors.ops))
    assert later["shifts"][0]["member"] == "bob@acme.example"  # Monday 09:30 Berlin
    assert later["shifts"][0]["since"] == "2030-01-07T08:00:00Z"


def test_a_bad_document_is_a_422_naming_the_field_and_nothing_is_stored(
    client: TestClient, actors: Actors
) -> None:
    bad = {**DOCUMENT, "rotations": {"primary": {**DOCUMENT["rotations"]["primary"]}}}
    bad["rotations"]["primary"]["timezone"] = "Mars/Olympus"
    body = problem(client.put(f"{API}/config", json=bad, headers=actors.ops), 422)
    assert "rotations.primary.timezone" in body["detail"]
    assert "Mars/Olympus" in body["detail"]
    assert ok(client.get(API, headers=actors.ops))["config"]["version"] is None


def test_a_manual_page_is_routed_listed_acknowledged_and_resolved(
    client: TestClient, actors: Actors, db: Database, settings: Settings, clock: Clock
) -> None:
    tenant = request_tenant(client, actors.am, name="gold", tier="premium")
    routes = [{"when": {"tier": ["premium"], "severity": ["critical"]}, "policy": "urgent"}]
    ok(client.put(f"{API}/config", json=with_routes(routes=routes), headers=actors.admin))
    body = {
        "summary": "checkout errors",
        "severity": "critical",
        "tenant": "gold",
        "key": "manual-1",
    }
    page = ok(client.post(f"{API}/pages", json=body, headers=actors.sec), 201)
    assert page["key"] == "manual:manual-1"  # a key given by hand is kept under manual:
    assert page["policy"] == "urgent"
    assert page["tenant_id"] == tenant["id"]
    assert page["tenant_name"] == "gold"
    assert page["config_version"] == 1
    same = ok(client.post(f"{API}/pages", json=body, headers=actors.ops), 201)
    assert same["id"] == page["id"]  # idempotent per key
    clock.advance(minutes=1)  # ids are time-ordered: the next page is the newer
    other = ok(client.post(f"{API}/pages", json={"summary": "batch slow"}, headers=actors.ops), 201)
    assert other["policy"] == "default"  # no tenant, severity high: no route matches
    send = build_actions(settings, db)["notify.send"]
    escalator.escalate_due(db, send, outbox=OutboxNotifier(db).queued)

    listed = ok(client.get(f"{API}/pages", params={"status": "open"}, headers=actors.gov))
    assert [p["id"] for p in listed["items"]] == [other["id"], page["id"]]
    by_tenant = ok(client.get(f"{API}/pages", params={"tenant": "gold"}, headers=actors.gov))
    assert [p["id"] for p in by_tenant["items"]] == [page["id"]]
    first = ok(client.get(f"{API}/pages", params={"limit": 1}, headers=actors.gov))
    assert len(first["items"]) == 1
    rest = ok(
        client.get(
            f"{API}/pages", params={"limit": 1, "cursor": first["next_cursor"]}, headers=actors.gov
        )
    )
    assert [p["id"] for p in rest["items"]] == [page["id"]]

    acked = ok(client.post(f"{API}/pages/{page['id']}/acknowledge", headers=actors.ops))
    assert acked["status"] == "acknowledged"
    assert acked["acknowledged_by"] == "oli"
    resolved = ok(client.post(f"{API}/pages/{page['id']}/resolve", headers=actors.sec))
    assert resolved["status"] == "resolved"
    detail = ok(client.get(f"{API}/pages/{page['id']}", headers=actors.auditor))
    assert [e["event"] for e in detail["timeline"]] == [
        "triggered",
        "notified",
        "acknowledged",
        "resolved",
    ]
    assert sorted(detail["timeline"][1]["targets"]) == ["alice@acme.example", "oncall@localhost"]
    still_open = ok(client.get(f"{API}/pages", params={"status": "open"}, headers=actors.gov))
    assert [p["id"] for p in still_open["items"]] == [other["id"]]


def test_unknown_pages_filters_and_bodies_are_problems(client: TestClient, actors: Actors) -> None:
    missing = "0193a0c4-0000-7000-8000-000000000000"
    problem(client.get(f"{API}/pages/{missing}", headers=actors.ops), 404)
    problem(client.post(f"{API}/pages/{missing}/acknowledge", headers=actors.ops), 404)
    problem(client.get(f"{API}/pages", params={"status": "asleep"}, headers=actors.ops), 422)
    problem(client.get(f"{API}/pages", params={"cursor": "nope"}, headers=actors.ops), 422)
    bad = {"summary": "x down", "severity": "urgent"}
    problem(client.post(f"{API}/pages", json=bad, headers=actors.ops), 422)
    ghost = {"summary": "x down", "tenant": "ghost"}
    problem(client.post(f"{API}/pages", json=ghost, headers=actors.ops), 404)
    problem(client.get(f"{API}/now", params={"at": "yesterday"}, headers=actors.ops), 422)
    far = {"at": "9999-12-31T23:00:00Z"}
    assert (
        "'at'" in problem(client.get(f"{API}/now", params=far, headers=actors.ops), 422)["detail"]
    )


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        (
            "GET",
            "",
            {"admin", "ops_engineer", "security", "governance", "auditor", "account_manager"},
        ),
        ("PUT", "/config", {"admin", "ops_engineer"}),
        ("POST", "/pages", {"admin", "ops_engineer", "security"}),
        ("POST", "/pages/{id}/acknowledge", {"admin", "ops_engineer", "security"}),
        ("POST", "/pages/{id}/resolve", {"admin", "ops_engineer", "security"}),
    ],
)
def test_who_may_do_what(
    client: TestClient, auth: TokenFactory, method: str, path: str, allowed: set[str]
) -> None:
    roles = [
        "admin",
        "ops_engineer",
        "security",
        "governance",
        "auditor",
        "account_manager",
        "finance",
        "qa",
        "tenant_owner",
    ]
    admin = auth("root", "admin")
    page = ok(client.post(f"{API}/pages", json={"summary": "probe"}, headers=admin), 201)
    bodies = {"/config": DOCUMENT, "/pages": {"summary": "rbac probe", "key": "rbac"}}
    for role in roles:
        headers = auth(f"who-{role}", role, tenant="acme" if role == "tenant_owner" else None)
        response = client.request(
            method,
            f"{API}{path.replace('{id}', page['id'])}",
            json=bodies.get(path),
            headers=headers,
        )
        if role in allowed:
            assert response.status_code in (200, 201), (role, response.text)
        else:
            assert problem(response, 403)["status"] == 403, role
    problem(client.get(API), 401)


def test_a_principal_bound_to_a_tenant_is_refused_whatever_its_roles(
    client: TestClient, auth: TokenFactory
) -> None:
    admin = auth("root", "admin")
    page = ok(client.post(f"{API}/pages", json={"summary": "db down"}, headers=admin), 201)
    bound = auth("bound-ops", "ops_engineer", tenant="acme")
    problem(client.get(f"{API}/pages", headers=bound), 403)
    problem(client.get(API, headers=bound), 403)
    problem(client.post(f"{API}/pages/{page['id']}/acknowledge", headers=bound), 403)
    assert ok(client.get(f"{API}/pages/{page['id']}", headers=admin))["status"] == "triggered"


@pytest.mark.parametrize("reserved", ["itil:0193a0c4-rec", "sla:0193a0c4-run/provisioning"])
def test_a_page_by_hand_cannot_take_a_key_the_platform_pages_under(
    client: TestClient, actors: Actors, db: Database, reserved: str
) -> None:
    body = {"summary": "squatting", "key": reserved}
    squat = ok(client.post(f"{API}/pages", json=body, headers=actors.ops), 201)
    assert squat["key"] == f"manual:{reserved}"
    given_back = body | {"key": squat["key"]}
    again = ok(client.post(f"{API}/pages", json=given_back, headers=actors.ops), 201)
    assert again["id"] == squat["id"]  # the key it was given back is the same page
    with db.write() as session:  # the platform's page, opened later, is a page of its own
        real = service.trigger(
            session, key=reserved, summary="the real one", severity="critical", actor=OLI
        )
    assert real.id != squat["id"]
    assert real.key == reserved
    assert real.summary == "the real one"
    with db.read() as session:
        found = service.page_for_key(session, reserved)
        assert found is not None
        assert found.id == real.id
        assert service.page_for_key(session, "itil:nothing") is None
    too_long = {"summary": "long key", "key": "k" * 194}
    assert problem(client.post(f"{API}/pages", json=too_long, headers=actors.ops), 422)
