"""The self-service portal (``/portal``): a tenant owner's own tenant, and the request forms.

Through the ``web`` client with a signed-in local user; tenants and the other
tenant's requests are made through the API (``client``) as staff do. The
portal must never show anything of another tenant, every form needs the
session's CSRF token, and a form naming another tenant is refused with nothing
filed.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.runbooks import engine
from tenantops.tenants.lifecycle import TenantState as S
from tests.conftest import Actors
from tests.flows import ok, tenant_in
from tests.web.conftest import UserFactory, sign_in

SETUP = Principal("system:test", frozenset({Role.ADMIN}), via="system")
OWNER = "olga@shop.example"
RIVAL = {"name": "rival-corp", "business_owner": "boss@rival.example", "contacts": []}


class Portal:
    """Olga's tenant and a rival's, each with a request; Olga signed in on ``web``."""

    def __init__(
        self, client: TestClient, web: TestClient, actors: Actors, user: UserFactory, db: Database
    ) -> None:
        self.client, self.web, self.actors = client, web, actors
        self.tenant = tenant_in(
            client,
            actors,
            S.ACTIVE,
            name="olgas-shop",
            display_name="Olga Shop",
            business_owner=OWNER,
            contacts=["team@shop.example"],
        )
        self.rival = tenant_in(client, actors, S.ACTIVE, **RIVAL)
        with db.write() as session:  # the onboarding runs are not what this tests
            for tenant in (self.tenant, self.rival):
                for run in engine.open_runs(session, tenant_id=tenant["id"]):
                    engine.cancel(session, run_id=run.id, principal=SETUP, reason="setup")
        self.rival_request = ok(
            client.post(
                f"/api/v1/tenants/{self.rival['id']}/requests",
                json={"kind": "budget", "amount": 777, "justification": "rival plans"},
                headers=actors.am,
            ),
            201,
        )
        user("olga", "tenant_owner", tenant=self.tenant["id"])
        self.csrf = sign_in(web, "olga")

    def requests_of(self, tenant: dict[str, Any]) -> list[dict[str, Any]]:
        url = f"/api/v1/tenants/{tenant['id']}/requests"
        items: list[dict[str, Any]] = ok(self.client.get(url, headers=self.actors.admin))["items"]
        return items

    def post(self, **form: str) -> Any:
        return self.web.post(
            "/portal/requests",
            data={"csrf_token": self.csrf, "tenant": self.tenant["id"], **form},
            follow_redirects=False,
        )

    def secrets(self) -> list[str]:
        """What of the rival tenant must never reach Olga."""
        return [
            self.rival["id"],
            self.rival["name"],
            RIVAL["business_owner"],
            self.rival_request["id"],
            "rival plans",
        ]


@pytest.fixture
def portal(
    client: TestClient, web: TestClient, actors: Actors, user: UserFactory, db: Database
) -> Portal:
    return Portal(client, web, actors, user, db)


def test_the_portal_shows_the_owners_tenant_and_nothing_of_any_other(portal: Portal) -> None:
    filed = portal.post(kind="quota", tier="premium", justification="launch next month")
    assert filed.status_code == 303
    page = portal.web.get("/portal")
    assert page.status_code == 200
    html = page.text
    assert "Olga Shop" in html
    assert "olgas-shop" in html
    for field, value in [("state", "active"), ("tier", "standard"), ("region", "eu-central-1")]:
        assert f'data-field="{field}">{value}<' in html
    assert 'data-field="budget">2500.00 EUR<' in html
    assert 'data-field="cost">0.00 EUR<' in html  # the owner may read their own costs
    for contact in (OWNER, "team@shop.example", "oncall@localhost"):
        assert f'href="mailto:{contact}"' in html
    # The request (pending, for governance) and its run; runs link to their pages.
    mine = portal.requests_of(portal.tenant)
    assert len(mine) == 1
    row = re.search(rf'<tr data-request="{mine[0]["id"]}".*?</tr>', html, re.DOTALL)
    assert row is not None
    assert "Quota change" in row.group(0)
    assert "tier premium" in row.group(0)
    assert "pending" in row.group(0)
    assert "governance" in row.group(0)
    assert f'href="/runs/{mine[0]["id"]}"' in html
    # Four forms, each posting with the session's CSRF token and labelled controls.
    forms = re.findall(r'<form method="post" action="/portal/requests".*?</form>', html, re.DOTALL)
    assert len(forms) == 4
    for form in forms:
        assert f'name="csrf_token" value="{portal.csrf}"' in form
        for control in re.findall(r'id="([a-z]+-[a-z_]+)" name=', form):
            assert f'<label for="{control}">' in form
    for secret in portal.secrets():
        assert secret not in html


def test_each_form_files_a_request_that_the_api_shows(portal: Portal) -> None:
    forms = [
        {"kind": "quota", "tier": "premium", "justification": "launch"},
        {"kind": "budget", "amount": "4000", "currency": "", "justification": "new workload"},
        {"kind": "access", "subject": "dev@shop.example", "permission": "write",
         "justification": "new hire"},
        {"kind": "tenant", "name": "olgas-analytics", "display_name": "", "tier": "basic",
         "region": "eu-west-1", "compliance_classification": "internal",
         "monthly_budget": "", "currency": "", "justification": "a data team"},
    ]  # fmt: skip
    for form in forms:
        r = portal.post(**form)
        assert r.status_code == 303, r.text
        target = r.headers["location"]
        assert target.startswith("/portal?submitted=")
        shown = portal.web.get(target)
        assert 'role="status"' in shown.text
        assert "was submitted" in shown.text
    filed = {q["kind"]: q for q in portal.requests_of(portal.tenant)}
    assert set(filed) == {"quota", "budget", "access", "tenant"}
    assert all(q["requested_by"] == "olga" for q in filed.values())
    assert all(q["decision"] == "pending" for q in filed.values())
    assert filed["budget"]["fields"] == {"amount": "4000.00", "currency": "EUR"}
    assert filed["tenant"]["fields"]["business_owner"] == OWNER
    assert filed["tenant"]["fields"]["display_name"] == "olgas-analytics"
    assert len(portal.requests_of(portal.rival)) == 1  # the rival's own, untouched


def test_forms_without_the_csrf_token_are_refused_and_file_nothing(portal: Portal) -> None:
    body = {"kind": "budget", "amount": "5000", "justification": "more", "tenant": "olgas-shop"}
    for token in (None, "", "0" * 64, portal.csrf[:-1] + "x"):
        data = body if token is None else {**body, "csrf_token": token}
        r = portal.web.post("/portal/requests", data=data, follow_redirects=False)
        assert r.status_code == 403
        assert "did not come from this site" in r.text
    assert portal.requests_of(portal.tenant) == []


def test_a_form_naming_another_tenant_is_refused(portal: Portal) -> None:
    for ref in (portal.rival["id"], portal.rival["name"]):
        r = portal.post(kind="budget", amount="1", justification="take over", tenant=ref)
        assert r.status_code == 404
        for secret in portal.secrets():
            assert secret not in r.text
    assert portal.requests_of(portal.tenant) == []
    assert len(portal.requests_of(portal.rival)) == 1


def test_invalid_forms_say_why_keep_the_input_and_file_nothing(portal: Portal) -> None:
    r = portal.post(kind="budget", amount="-1", justification="less")
    assert r.status_code == 422
    assert 'role="alert"' in r.text
    assert "amount: Input should be greater than or equal to 0" in r.text
    assert 'id="budget-justification" name="justification" rows="2" required' in r.text
    assert ">less</textarea>" in r.text

    r = portal.post(kind="quota", tier="standard", justification="same again")
    assert r.status_code == 422
    assert "already on tier standard" in r.text

    r = portal.post(kind="access", subject="not-mail", justification="someone")
    assert r.status_code == 422
    assert "subject:" in r.text

    r = portal.post(kind="tenant", name="rival-corp", tier="basic", region="eu-west-1",
                    compliance_classification="internal", justification="copy")  # fmt: skip
    assert r.status_code == 409
    assert "is taken" in r.text
    assert portal.requests_of(portal.tenant) == []


def test_staff_and_strangers_get_no_portal(
    client: TestClient, web: TestClient, user: UserFactory, actors: Actors
) -> None:
    r = web.get("/portal", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fportal"
    tenant = tenant_in(client, actors, S.ACTIVE)
    user("gus2", "governance")
    csrf = sign_in(web, "gus2")
    page = web.get("/portal")
    assert page.status_code == 403
    assert "For tenant owners" in page.text
    # Governance decides requests but does not file them, even with a valid form.
    r = web.post(
        "/portal/requests",
        data={"csrf_token": csrf, "tenant": tenant["id"], "kind": "budget", "amount": "1",
              "justification": "not mine"},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 403
    listed = client.get(f"/api/v1/tenants/{tenant['id']}/requests", headers=actors.admin)
    assert ok(listed)["items"] == []


def test_the_approver_sees_what_is_asked_and_why_in_the_inbox_and_on_the_run_page(
    portal: Portal, user: UserFactory
) -> None:
    r = portal.post(kind="quota", tier="premium", justification="launch in March")
    assert r.status_code == 303, r.text
    run_id = next(q["id"] for q in portal.requests_of(portal.tenant) if q["kind"] == "quota")
    portal.web.cookies.clear()
    user("gus", "governance")
    sign_in(portal.web, "gus")
    inbox = portal.web.get("/approvals").text
    assert "tier: premium" in inbox
    assert "justification: launch in March" in inbox
    page = portal.web.get(f"/runs/{run_id}").text
    assert "data-inputs" in page
    assert "launch in March" in page
    # The portal's forms carry their attributes as HTML, not as escaped text.
    portal.web.cookies.clear()
    sign_in(portal.web, "olga")
    form = portal.web.get("/portal").text
    assert 'pattern="[A-Z]{3}"' in form
    assert 'step="0.01"' in form


def test_the_portal_is_in_the_navigation_of_tenant_owners_only(
    portal: Portal, user: UserFactory
) -> None:
    assert 'href="/portal"' in portal.web.get("/").text  # olga, the owner
    portal.web.cookies.clear()
    user("quinn", "qa", tenant=portal.tenant["id"])  # bound to the tenant, not its owner
    sign_in(portal.web, "quinn")
    page = portal.web.get("/").text
    assert 'href="/portal"' not in page
    assert 'href="/tenants"' in page
