"""Forged input no browser sends gets the page's own error, never a 500 (PostgreSQL included)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Actors
from tests.factories import tenant_body
from tests.flows import S, tenant_in
from tests.web.conftest import UserFactory, sign_in


def test_nul_characters_in_ids_and_forms_are_refused_not_crashed_on(
    web: TestClient, user: UserFactory
) -> None:
    user("gus", "governance")
    csrf = sign_in(web, "gus")
    for path in ("/runs/%00", "/runs/a%00b/steps", "/tenants/a%00b"):
        assert web.get(path).status_code in (404, 422), path
    forged = [
        {"kind": "gate", "run_id": "a\x00b", "step": "approval", "decision": "approve"},
        {"kind": "onboarding", "tenant": "a\x00", "role": "governance", "decision": "approve"},
    ]
    for form in forged:
        r = web.post("/approvals/decide", data={**form, "csrf_token": csrf})
        assert r.status_code < 500, (form, r.status_code)


def test_the_portal_refuses_a_forged_tenant_with_a_nul(
    web: TestClient, user: UserFactory, client: TestClient, actors: Actors
) -> None:
    tenant = tenant_in(client, actors, S.ACTIVE, name="olgas-shop")
    user("olga", "tenant_owner", tenant=tenant["id"])
    csrf = sign_in(web, "olga")
    r = web.post(
        "/portal/requests",
        data={
            "kind": "budget",
            "tenant": "x\x00",
            "amount": "10",
            "justification": "forged",
            "csrf_token": csrf,
        },
    )
    assert r.status_code < 500


def test_new_is_no_tenant_name_because_it_is_the_new_tenant_form(
    client: TestClient, actors: Actors
) -> None:
    r = client.post("/api/v1/tenants", json=tenant_body(name="new"), headers=actors.am)
    assert r.status_code == 422
    assert "reserved" in r.text
