"""The new-tenant form: the API's schema, service and role table, in a page."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.requests import service as requests
from tenantops.requests.schemas import TenantRequestCreate
from tenantops.tenants import service as tenant_service
from tenantops.tenants.models import Tenant
from tenantops.tenants.schemas import TenantCreate
from tests.web.conftest import UserFactory, sign_in

GOOD = {
    "name": "acme",
    "display_name": "ACME Corp",
    "business_owner": "Owner@Acme.example",
    "compliance_classification": "confidential",
    "region": "eu-central-1",
    "tier": "standard",
    "monthly_budget": "2500",
    "currency": "EUR",
    "contacts": "ops@acme.example\nfin@acme.example",
    "ticket_ref": "RITM0012345",
}


def tenants(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Tenant)) or 0)


def test_an_account_manager_requests_a_tenant_through_the_form(
    web: TestClient, user: UserFactory, db: Database
) -> None:
    user("amy", "account_manager")
    csrf = sign_in(web, "amy")
    page = web.get("/tenants/new")
    assert page.status_code == 200
    assert '<label for="business_owner">' in page.text
    r = web.post("/tenants/new", data={**GOOD, "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/tenants/acme"
    with db.read() as session:
        tenant = session.scalars(select(Tenant)).one()
        assert (tenant.state, tenant.requested_by) == ("requested", "amy")
        assert tenant.business_owner == "owner@acme.example"
        assert tenant.contacts == ["ops@acme.example", "fin@acme.example"]
        actions = session.scalars(select(AuditEntry.action)).all()
    assert "tenant.requested" in actions


def test_bad_input_keeps_what_was_typed_names_each_field_and_stores_nothing(
    web: TestClient, user: UserFactory, db: Database
) -> None:
    user("amy", "account_manager")
    csrf = sign_in(web, "amy")
    bad = {**GOOD, "name": "Not A Label", "business_owner": "nobody", "csrf_token": csrf}
    r = web.post("/tenants/new", data=bad)
    assert r.status_code == 422
    assert "Nothing was stored" in r.text
    assert "name:" in r.text
    assert "business owner:" in r.text
    assert 'value="ACME Corp"' in r.text  # what was typed stays
    assert tenants(db) == 0


def test_a_taken_name_is_refused_with_the_services_message(
    web: TestClient, user: UserFactory, db: Database
) -> None:
    user("amy", "account_manager")
    csrf = sign_in(web, "amy")
    assert web.post("/tenants/new", data={**GOOD, "csrf_token": csrf}).status_code == 200
    again = web.post("/tenants/new", data={**GOOD, "csrf_token": csrf})
    assert again.status_code == 409
    assert "already exists" in again.text
    assert tenants(db) == 1


def test_only_the_roles_of_the_api_get_the_form(
    web: TestClient, user: UserFactory, db: Database
) -> None:
    user("oli", "ops_engineer")
    csrf = sign_in(web, "oli")
    assert web.get("/tenants/new").status_code == 403
    assert web.post("/tenants/new", data={**GOOD, "csrf_token": csrf}).status_code == 403
    assert tenants(db) == 0


def test_a_form_without_the_sessions_csrf_token_changes_nothing(
    web: TestClient, user: UserFactory, db: Database
) -> None:
    user("amy", "account_manager")
    sign_in(web, "amy")
    assert web.post("/tenants/new", data={**GOOD, "csrf_token": "forged"}).status_code == 403
    assert tenants(db) == 0


def test_signed_out_visitors_are_sent_to_the_login(web: TestClient) -> None:
    r = web.get("/tenants/new", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?next=%2Ftenants%2Fnew")


def test_a_name_an_open_request_asks_for_is_refused(
    web: TestClient, user: UserFactory, db: Database
) -> None:
    ann = Principal("ann", frozenset({Role.ACCOUNT_MANAGER}))
    with db.write() as session:
        home, _ = tenant_service.create_tenant(
            session,
            principal=ann,
            data=TenantCreate.model_validate(
                {**GOOD, "name": "home", "contacts": ["ops@acme.example"]}
            ),
        )
        filed = requests.submit_request(
            session,
            principal=ann,
            ref=home.id,
            data=TenantRequestCreate(
                kind="tenant",
                name="acme",
                tier="basic",
                region="eu-central-1",
                compliance_classification="internal",
                justification="a team of our own",
            ),
        )
    user("amy", "account_manager")
    csrf = sign_in(web, "amy")
    refused = web.post("/tenants/new", data={**GOOD, "csrf_token": csrf})
    assert refused.status_code == 409
    assert "an open request asks for the tenant name" in refused.text
    assert f"(request {filed.id})" in refused.text  # which one, so someone can decide it
    assert tenants(db) == 1  # only the home tenant
