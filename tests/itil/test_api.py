"""``/api/v1/itil/records`` through the ASGI client: roles, tenant scoping, problems, ETags."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Actors, TokenFactory
from tests.flows import ok, problem, request_tenant

RECORDS = "/api/v1/itil/records"

pytestmark = pytest.mark.usefixtures("clock")


def body(**overrides: Any) -> dict[str, Any]:
    return {"kind": "incident", "title": "orders API 503", "priority": 3, **overrides}


def test_open_move_note_assign_and_read_a_record_with_its_timeline(
    client: TestClient, actors: Actors
) -> None:
    tenant = request_tenant(client, actors.am)["name"]
    opened = client.post(
        RECORDS, json=body(tenant=tenant, correlation_id="k-1"), headers=actors.ops
    )
    record = ok(opened, 201)
    assert (record["number"], record["state"], record["replayed"]) == ("INC0000001", "new", False)
    assert opened.headers["ETag"] == '"1"'
    again = ok(
        client.post(RECORDS, json=body(tenant=tenant, correlation_id="k-1"), headers=actors.ops),
        201,
    )
    assert (again["id"], again["replayed"]) == (record["id"], True)

    path = f"{RECORDS}/{record['number']}"
    stale = client.post(
        f"{path}/transitions",
        json={"state": "in_progress"},
        headers={**actors.ops, "If-Match": '"7"'},
    )
    assert problem(stale, 412)["current_version"] == 1
    moved = client.post(
        f"{path}/transitions",
        json={"state": "in_progress"},
        headers={**actors.ops, "If-Match": '"1"'},
    )
    assert ok(moved)["state"] == "in_progress"
    assert moved.headers["ETag"] == '"2"'
    illegal = problem(
        client.post(f"{path}/transitions", json={"state": "closed"}, headers=actors.ops), 422
    )
    assert illegal["allowed"] == ["cancelled", "on_hold", "resolved"]
    assert "allowed: cancelled, on_hold, resolved" in illegal["detail"]
    unresolved = client.post(f"{path}/transitions", json={"state": "6"}, headers=actors.ops)
    assert "needs a resolution" in problem(unresolved, 422)["detail"]
    note = ok(
        client.post(
            f"{path}/notes", json={"text": "paged db team", "key": "n1"}, headers=actors.ops
        ),
        201,
    )
    assert note["kind"] == "work_note"
    ok(
        client.post(
            f"{path}/notes", json={"text": "paged db team", "key": "n1"}, headers=actors.ops
        ),
        201,
    )
    assigned = ok(
        client.put(f"{path}/assignment", json={"assigned_to": "team-db"}, headers=actors.sec)
    )
    assert assigned["assigned_to"] == "team-db"
    resolved = client.post(
        f"{path}/transitions", json={"state": "6", "resolution": "pool resized"}, headers=actors.ops
    )
    assert ok(resolved)["state"] == "resolved"  # ServiceNow's code for resolved

    detail = ok(client.get(path, headers=actors.auditor))
    assert [n["kind"] for n in detail["timeline"]] == ["state", "work_note", "assignment", "state"]
    assert detail["next_states"] == ["closed", "in_progress"]
    assert detail["resolution"] == "pool resized"
    listed = ok(
        client.get(RECORDS, params={"tenant": tenant, "kind": "incident"}, headers=actors.gov)
    )
    assert [r["number"] for r in listed["items"]] == ["INC0000001"]
    assert ok(client.get(RECORDS, params={"open_only": "true"}, headers=actors.ops))["items"] == []


def test_changes_are_authorised_by_governance_not_by_who_opened_them(
    client: TestClient, actors: Actors
) -> None:
    change = ok(
        client.post(RECORDS, json=body(kind="change", title="raise quota"), headers=actors.am), 201
    )
    path = f"{RECORDS}/{change['number']}/transitions"
    for state in ("assess", "authorize"):
        ok(client.post(path, json={"state": state}, headers=actors.ops))
    refused = problem(client.post(path, json={"state": "scheduled"}, headers=actors.ops), 403)
    assert refused["type"].endswith("/segregation-of-duties")
    assert (
        ok(client.post(path, json={"state": "scheduled"}, headers=actors.gov))["state"]
        == "scheduled"
    )
    # An account manager opens changes, nothing else.
    problem(client.post(RECORDS, json=body(), headers=actors.am), 403)
    problem(client.post(path, json={"state": "implement"}, headers=actors.am), 403)


def test_a_replayed_key_answers_only_what_get_would_and_a_note_key_stays_on_its_record(
    client: TestClient, actors: Actors, auth: TokenFactory
) -> None:
    alpha = request_tenant(client, actors.am)["name"]
    bravo = request_tenant(client, actors.am)["name"]
    key = "alert:3f2a9c:2026-11-27T09:00:00Z"  # guessable: fingerprint and startsAt
    secret = body(tenant=bravo, title="bravo: db credentials rotated", correlation_id=key)
    theirs = ok(client.post(RECORDS, json=secret, headers=actors.ops), 201)
    eve = auth("eve", "ops_engineer", tenant=alpha)
    problem(client.get(f"{RECORDS}/{theirs['number']}", headers=eve), 404)
    probe = client.post(RECORDS, json=body(tenant=alpha, correlation_id=key), headers=eve)
    assert "bravo" not in problem(probe, 404)["detail"]
    reused = problem(
        client.post(RECORDS, json=body(tenant=alpha, correlation_id=key), headers=actors.ops), 422
    )
    assert reused["type"].endswith("/idempotency-key-reused")
    problem(client.post(RECORDS, json=body(correlation_id=key), headers=actors.ops), 422)
    assert [r["id"] for r in ok(client.get(RECORDS, headers=actors.ops))["items"]] == [theirs["id"]]

    ours = ok(client.post(RECORDS, json=body(tenant=alpha), headers=actors.ops), 201)
    ok(
        client.post(
            f"{RECORDS}/{theirs['number']}/notes",
            json={"text": "a", "key": "k"},
            headers=actors.ops,
        ),
        201,
    )
    elsewhere = client.post(
        f"{RECORDS}/{ours['number']}/notes", json={"text": "a", "key": "k"}, headers=actors.ops
    )
    assert problem(elsewhere, 422)["type"].endswith("/idempotency-key-reused")
    detail = ok(client.get(f"{RECORDS}/{ours['number']}", headers=actors.ops))
    assert [n["kind"] for n in detail["timeline"]] == []

    garbled = client.post(
        f"{RECORDS}/{ours['number']}/transitions",
        json={"state": "in_progress"},
        headers={**actors.ops, "If-Match": "garbage"},
    )
    assert "ETag of the record as last read" in problem(garbled, 422)["detail"]


def test_roles_and_bad_input_are_problems(client: TestClient, actors: Actors) -> None:
    problem(client.post(RECORDS, json=body(), headers=actors.auditor), 403)
    problem(client.post(RECORDS, json=body(), headers=actors.gov), 403)
    problem(client.post(RECORDS, json=body(priority=9), headers=actors.ops), 422)
    problem(client.post(RECORDS, json=body(kind="request"), headers=actors.ops), 422)
    problem(client.post(RECORDS, json=body(tenant="nobody"), headers=actors.ops), 404)
    problem(client.get(f"{RECORDS}/INC0000404", headers=actors.ops), 404)
    problem(client.get(RECORDS, params={"cursor": "nope"}, headers=actors.ops), 422)
    problem(client.get(RECORDS), 401)
    problem(client.get(RECORDS, headers=actors.qa), 403)


def test_a_tenant_owner_reads_only_their_own_tenants_records(
    client: TestClient, actors: Actors, auth: TokenFactory
) -> None:
    acme = request_tenant(client, actors.am)["name"]
    globex = request_tenant(client, actors.am)["name"]
    ours = ok(client.post(RECORDS, json=body(tenant=acme), headers=actors.ops), 201)
    theirs = ok(client.post(RECORDS, json=body(tenant=globex), headers=actors.ops), 201)
    platform = ok(client.post(RECORDS, json=body(kind="problem"), headers=actors.ops), 201)
    owner = auth("olivia", "tenant_owner", tenant=acme)
    listed = ok(client.get(RECORDS, headers=owner))
    assert [r["id"] for r in listed["items"]] == [ours["id"]]
    assert ok(client.get(f"{RECORDS}/{ours['number']}", headers=owner))["id"] == ours["id"]
    for hidden in (theirs, platform):
        problem(client.get(f"{RECORDS}/{hidden['number']}", headers=owner), 404)
    problem(client.get(RECORDS, params={"tenant": globex}, headers=owner), 404)
    problem(
        client.post(f"{RECORDS}/{ours['number']}/notes", json={"text": "x"}, headers=owner), 403
    )


def test_the_routes_are_documented_with_problem_answers(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, methods in (
        ("/api/v1/itil/records", ("get", "post")),
        ("/api/v1/itil/records/{record}", ("get",)),
        ("/api/v1/itil/records/{record}/transitions", ("post",)),
        ("/api/v1/itil/records/{record}/notes", ("post",)),
        ("/api/v1/itil/records/{record}/assignment", ("put",)),
        ("/api/v1/itil/records/{record}/problem", ("put",)),
    ):
        for method in methods:
            operation = spec["paths"][path][method]
            assert operation["summary"]
            assert "application/problem+json" in operation["responses"]["422"]["content"]
