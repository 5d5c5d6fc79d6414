"""Starting the Access Review and the Budget Review from a tenant's page.

The forms post to ``/tenants/{ref}/actions/{checklist}`` with the session's
CSRF token; a start lands on the new run's page with a one-time message, a
refusal changes nothing. Runs and audit entries are read back through the API.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Actors, Clock
from tests.flows import S, ok, tenant_in
from tests.web.conftest import UserFactory
from tests.web.test_tenant_pages import as_user, section

RUNS = "/api/v1/runs"
CHECKLISTS = ("access-review", "budget-review")
MAY_START = {
    "access-review": {"security", "governance", "admin"},
    "budget-review": {"finance", "admin"},
}
ROLES = (
    "admin",
    "ops_engineer",
    "security",
    "governance",
    "finance",
    "account_manager",
    "auditor",
    "qa",
)


@pytest.fixture
def tenant(web: TestClient, actors: Actors, clock: Clock) -> dict[str, Any]:
    return tenant_in(web, actors, S.ACTIVE, name="ledger")


def runs_of(web: TestClient, actors: Actors, tenant_id: str, runbook: str) -> list[dict[str, Any]]:
    page = ok(web.get(RUNS, params={"tenant": tenant_id, "runbook": runbook}, headers=actors.admin))
    items: list[dict[str, Any]] = page["items"]
    return items


def run_of(web: TestClient, actors: Actors, run_id: str) -> dict[str, Any]:
    return ok(web.get(f"{RUNS}/{run_id}", headers=actors.admin))


def checklist_forms(html: str) -> set[str]:
    return set(re.findall(r'data-checklist-form="([^"]+)"', html))


def open_links(html: str) -> list[str]:
    return re.findall(r'data-open-run="([^"]+)"', html)


def start(web: TestClient, name: str, checklist: str, **fields: str) -> Any:
    return web.post(f"/tenants/{name}/actions/{checklist}", data=fields, follow_redirects=False)


def started_by_audit(web: TestClient, actors: Actors, tenant_id: str, run_id: str) -> list[str]:
    entries = ok(
        web.get(
            "/api/v1/audit",
            params={"tenant_id": tenant_id, "action": "run.started", "limit": 500},
            headers=actors.admin,
        )
    )["items"]
    return [e["actor"] for e in entries if (e.get("detail") or {}).get("run_id") == run_id]


# ------------------------------------------------------------------------ what is offered


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_the_forms_the_api_lets_it_post(
    web: TestClient, user: UserFactory, tenant: dict[str, Any], role: str
) -> None:
    as_user(web, user, "viewer", role)
    page = web.get("/tenants/ledger")
    assert page.status_code == 200, page.text
    expected = {c for c in CHECKLISTS if role in MAY_START[c]}
    assert checklist_forms(page.text) == expected
    for name in CHECKLISTS:
        needs = f'data-needs="{name}"' in page.text
        assert needs == (name not in expected), name  # the others are told who starts one
    for name in expected:
        form = re.search(rf'<form [^>]*data-checklist-form="{name}".*?</form>', page.text, re.S)
        assert form
        assert 'action="/tenants/ledger/actions/' + name + '"' in form.group(0)
        assert 'name="csrf_token"' in form.group(0)
    if "budget-review" in expected:  # the month defaults to the current one (the clock's)
        assert re.search(r'name="month" type="month" value="2030-01"', page.text)


def test_a_tenant_owner_is_told_who_starts_them(
    web: TestClient, user: UserFactory, tenant: dict[str, Any]
) -> None:
    as_user(web, user, "olga", "tenant_owner", tenant=tenant["id"])
    page = web.get("/tenants/ledger")
    assert page.status_code == 200
    assert checklist_forms(page.text) == set()
    assert "Started by the admin or governance or security role" in page.text
    assert "Started by the admin or finance role" in page.text


# ------------------------------------------------------------------------ starting


def test_security_starts_an_access_review_and_lands_on_its_run(
    web: TestClient, actors: Actors, user: UserFactory, tenant: dict[str, Any]
) -> None:
    csrf = as_user(web, user, "sue", "security")
    r = start(web, "ledger", "access-review", csrf_token=csrf, reason="quarterly review")
    assert r.status_code == 303, r.text
    target = r.headers["location"]
    run_id = target.removeprefix("/runs/")
    assert target == f"/runs/{run_id}"

    run = run_of(web, actors, run_id)
    assert run["runbook_id"] == "access-review"
    assert run["tenant_id"] == tenant["id"]
    assert run["started_by"] == "sue"
    assert run["inputs"]["reason"] == "quarterly review"
    assert started_by_audit(web, actors, tenant["id"], run_id) == ["sue"]

    landed = web.get(target)
    assert landed.status_code == 200
    assert 'data-flash="ok"' in landed.text
    assert "Access review started. Another security user works through its gates" in landed.text
    again = web.get(target)
    assert "data-flash" not in again.text  # shown once

    # Back on the tenant page the open review is a link, not a second button.
    page = web.get("/tenants/ledger")
    assert "access-review" not in checklist_forms(page.text)
    assert open_links(page.text) == [run_id]
    assert f'href="/runs/{run_id}"' in section(page.text, "actions")


def test_finance_starts_budget_reviews_of_this_month_and_another(
    web: TestClient, actors: Actors, user: UserFactory, tenant: dict[str, Any], clock: Clock
) -> None:
    csrf = as_user(web, user, "fran", "finance")
    r = start(web, "ledger", "budget-review", csrf_token=csrf, month="")
    assert r.status_code == 303, r.text
    current = r.headers["location"].removeprefix("/runs/")
    run = run_of(web, actors, current)
    assert (run["runbook_id"], run["started_by"]) == ("budget-review", "fran")
    assert run["inputs"]["month"] == "2030-01"  # empty: the current month, as the API
    assert started_by_audit(web, actors, tenant["id"], current) == ["fran"]
    landed = web.get(r.headers["location"])
    assert "Budget review of 2030-01 started. Another finance user" in landed.text

    # This month's review is open: linked, and the form asks for another month.
    page = web.get("/tenants/ledger")
    assert open_links(page.text) == [current]
    assert "budget-review" in checklist_forms(page.text)
    assert re.search(r'name="month" type="month" value="" required', page.text)

    clock.advance(minutes=5)  # the open reviews are listed oldest first
    r = start(web, "ledger", "budget-review", csrf_token=csrf, month="2029-12")
    assert r.status_code == 303, r.text
    december = r.headers["location"].removeprefix("/runs/")
    assert run_of(web, actors, december)["inputs"]["month"] == "2029-12"
    assert open_links(web.get("/tenants/ledger").text) == [current, december]


def test_an_admin_may_start_both(
    web: TestClient, actors: Actors, user: UserFactory, tenant: dict[str, Any]
) -> None:
    csrf = as_user(web, user, "root", "admin")
    for checklist in CHECKLISTS:
        r = start(web, tenant["id"], checklist, csrf_token=csrf)  # by id as well as by name
        assert r.status_code == 303, r.text
        run = run_of(web, actors, r.headers["location"].removeprefix("/runs/"))
        assert (run["runbook_id"], run["started_by"]) == (checklist, "root")


# ------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("role", "checklist"),
    [
        ("ops_engineer", "access-review"),
        ("finance", "access-review"),
        ("auditor", "access-review"),
        ("governance", "budget-review"),
        ("security", "budget-review"),
        ("tenant_owner", "budget-review"),
        ("tenant_owner", "access-review"),
    ],
)
def test_a_role_the_api_refuses_gets_403_and_no_run(
    web: TestClient,
    actors: Actors,
    user: UserFactory,
    tenant: dict[str, Any],
    role: str,
    checklist: str,
) -> None:
    bound = tenant["id"] if role == "tenant_owner" else None
    csrf = as_user(web, user, "viewer", role, tenant=bound)
    r = start(web, "ledger", checklist, csrf_token=csrf, month="2030-01", reason="x")
    assert r.status_code == 403, r.text
    assert f'data-failed="{checklist}"' in r.text
    assert "Nothing was changed." in r.text
    assert runs_of(web, actors, tenant["id"], checklist) == []


def test_a_form_without_the_csrf_token_is_refused(
    web: TestClient, actors: Actors, user: UserFactory, tenant: dict[str, Any]
) -> None:
    as_user(web, user, "root", "admin")
    for checklist in CHECKLISTS:
        for token in (None, "forged"):
            fields = {"reason": "x"} if token is None else {"csrf_token": token}
            r = start(web, "ledger", checklist, **fields)
            assert r.status_code == 403, r.text
            assert "did not come from this site" in r.text
        assert runs_of(web, actors, tenant["id"], checklist) == []


def test_another_tenant_is_404_for_its_owner(
    web: TestClient, actors: Actors, user: UserFactory, tenant: dict[str, Any]
) -> None:
    other = tenant_in(web, actors, S.ACTIVE, name="other")
    csrf = as_user(web, user, "olga", "tenant_owner", tenant=tenant["id"])
    r = start(web, other["id"], "access-review", csrf_token=csrf)
    assert r.status_code == 404
    assert runs_of(web, actors, other["id"], "access-review") == []


def test_bad_input_is_422_with_the_values_kept(
    web: TestClient, actors: Actors, user: UserFactory, tenant: dict[str, Any]
) -> None:
    csrf = as_user(web, user, "root", "admin")
    r = start(web, "ledger", "budget-review", csrf_token=csrf, month="2030-13")
    assert r.status_code == 422, r.text
    assert 'data-failed="budget-review"' in r.text
    assert 'value="2030-13"' in r.text
    r = start(web, "ledger", "budget-review", csrf_token=csrf, month="next month")
    assert r.status_code == 422, r.text
    r = start(web, "ledger", "access-review", csrf_token=csrf, reason="r" * 501)
    assert r.status_code == 422, r.text
    assert "at most 500 characters" in r.text
    for checklist in CHECKLISTS:
        assert runs_of(web, actors, tenant["id"], checklist) == []


@pytest.mark.parametrize(
    ("checklist", "role", "fields", "detail"),
    [
        ("access-review", "governance", {"reason": "again"}, "the access review of ledger is open"),
        (
            "budget-review",
            "finance",
            {"month": "2030-01"},
            "the budget review of ledger for 2030-01 is open",
        ),
    ],
)
def test_a_second_start_is_refused_with_a_link_to_the_open_run(
    web: TestClient,
    actors: Actors,
    user: UserFactory,
    tenant: dict[str, Any],
    checklist: str,
    role: str,
    fields: dict[str, str],
    detail: str,
) -> None:
    csrf = as_user(web, user, "first", role)
    first = start(web, "ledger", checklist, csrf_token=csrf, **fields)
    assert first.status_code == 303, first.text
    run_id = first.headers["location"].removeprefix("/runs/")

    # A second person whose page still showed the button (the race the page cannot see).
    csrf = as_user(web, user, "second", role)
    r = start(web, "ledger", checklist, csrf_token=csrf, **fields)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/tenants/ledger"
    page = web.get("/tenants/ledger")
    assert 'data-flash="error"' in page.text
    assert f"{detail}: run {run_id}" in page.text
    assert open_links(page.text) == [run_id]
    assert "data-flash" not in web.get("/tenants/ledger").text  # shown once
    assert [r["id"] for r in runs_of(web, actors, tenant["id"], checklist)] == [run_id]
    assert run_of(web, actors, run_id)["started_by"] == "first"
