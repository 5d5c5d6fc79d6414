"""The tenants list and the tenant page: what each section shows, to whom, and its actions.

Tenants are brought to their states through the API (``tests.flows``); the
pages are read and posted as local users signed in through the login form.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.notifications import service as notifications
from tenantops.wiring import build_worker
from tests.conftest import Actors, Clock, TokenFactory
from tests.finops.focusdata import tagged, write_csv
from tests.flows import (
    PATH,
    S,
    approve,
    decide_reactivation,
    drain,
    ok,
    reactivated,
    request_reactivation,
    request_tenant,
    tenant_in,
)
from tests.web.conftest import UserFactory, sign_in

TENANTS = "/api/v1/tenants"


def as_user(
    web: TestClient, user: UserFactory, name: str, *roles: str, tenant: str | None = None
) -> str:
    """Create ``name`` with ``roles`` and sign in as them (alone); the session's CSRF token."""
    user(name, *roles, tenant=tenant)
    web.cookies.clear()
    return sign_in(web, name)


def actions_of(html: str) -> set[str]:
    return set(re.findall(r'data-action="([^"]+)"', html))


def state_of(web: TestClient, actors: Actors, tenant: str) -> dict[str, Any]:
    return ok(web.get(f"{TENANTS}/{tenant}", headers=actors.admin))


def audit_count(db: Database, tenant_id: str) -> int:
    with db.read() as session:
        query = select(func.count()).where(AuditEntry.tenant_id == tenant_id)
        return int(session.execute(query).scalar_one())


def section(html: str, name: str) -> str:
    """The HTML of ``<section id=name>`` (sections do not nest)."""
    match = re.search(rf'<section [^>]*id="{name}".*?</section>', html, re.S)
    assert match, f"no section {name}"
    return match.group(0)


# ---------------------------------------------------------------------------- the list


def test_the_list_searches_filters_and_counts(
    web: TestClient, actors: Actors, user: UserFactory
) -> None:
    live = tenant_in(web, actors, S.ACTIVE, name="lively", region="us-east-1", tier="premium")
    request_tenant(web, actors.am, name="quiet-one", display_name="Quiet Ltd")
    request_tenant(web, actors.am, name="quiet-two", business_owner="boss@quiet.example")
    as_user(web, user, "oscar", "ops_engineer")

    page = web.get("/tenants")
    assert page.status_code == 200, page.text
    assert 'data-count="3"' in page.text
    assert {"lively", "quiet-one", "quiet-two"} <= set(
        re.findall(r'data-tenant="([^"]+)"', page.text)
    )
    assert f'href="/tenants/{live["name"]}"' in page.text

    def names(**params: str) -> set[str]:
        r = web.get("/tenants", params=params)
        assert r.status_code == 200, r.text
        return set(re.findall(r'data-tenant="([^"]+)"', r.text))

    assert names(state="active") == {"lively"}
    assert names(region="us-east-1") == {"lively"}
    assert names(tier="premium") == {"lively"}
    assert names(q="quiet") == {"quiet-one", "quiet-two"}
    assert names(q="Quiet Ltd") == {"quiet-one"}  # display name, any case
    assert names(q="boss@") == {"quiet-two"}  # owner
    assert names(q="100%_") == set()  # wildcards are text
    assert names(state="requested", q="two") == {"quiet-two"}
    assert 'data-count="0"' in web.get("/tenants", params={"state": "archived"}).text


def test_the_list_pages_by_fifty_with_a_count(
    web: TestClient, actors: Actors, user: UserFactory
) -> None:
    made = {request_tenant(web, actors.am, name=f"paged-{n:02d}")["name"] for n in range(53)}
    as_user(web, user, "oscar", "ops_engineer")

    first = web.get("/tenants")
    assert first.status_code == 200
    rows = re.findall(r'data-tenant="([^"]+)"', first.text)
    assert len(rows) == 50
    assert rows[0] == "paged-52"  # newest first
    assert "Showing 1–50 of 53 tenants" in first.text
    following = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert following

    second = web.get(following.group(1).replace("&amp;", "&"))
    assert second.status_code == 200
    more = re.findall(r'data-tenant="([^"]+)"', second.text)
    assert "Showing 51–53 of 53 tenants" in second.text
    assert 'rel="next"' not in second.text
    assert set(rows) | set(more) == made
    assert not set(rows) & set(more)

    # Filters survive paging.
    filtered = web.get("/tenants", params={"q": "paged-0"})
    assert "of 10 tenants" in filtered.text
    assert web.get("/tenants", params={"cursor": "not-a-cursor"}).status_code == 422


def test_a_tenant_owner_sees_only_their_tenant(
    web: TestClient, actors: Actors, user: UserFactory
) -> None:
    mine = tenant_in(web, actors, S.SUSPENDED, name="mine")
    other = tenant_in(web, actors, S.SUSPENDED, name="theirs")
    csrf = as_user(web, user, "olga", "tenant_owner", tenant=mine["id"])

    listing = web.get("/tenants")
    assert re.findall(r'data-tenant="([^"]+)"', listing.text) == ["mine"]
    assert 'data-count="1"' in listing.text
    assert web.get("/tenants", params={"q": "theirs"}).text.count("data-tenant=") == 0

    own = web.get("/tenants/mine")
    assert own.status_code == 200
    assert actions_of(own.text) == {"request-reactivation"}
    for ref in ("theirs", other["id"]):
        page = web.get(f"/tenants/{ref}")
        assert page.status_code == 404
        assert "theirs" not in page.text.replace(f"tenant {ref}", "")

    before = audit_count_api(web, actors, other["id"])
    refused = web.post(
        f"/tenants/{other['id']}/actions/request-reactivation",
        data={"csrf_token": csrf, "reason": "please"},
    )
    assert refused.status_code == 404
    assert audit_count_api(web, actors, other["id"]) == before
    assert (
        ok(web.get(f"{TENANTS}/{other['id']}/approvals", headers=actors.admin))[-1]["kind"]
        != "reactivation"
    )


def audit_count_api(web: TestClient, actors: Actors, tenant_id: str) -> int:
    return len(
        ok(
            web.get(
                "/api/v1/audit", params={"tenant_id": tenant_id, "limit": 500}, headers=actors.admin
            )
        )["items"]
    )


def test_an_unknown_tenant_is_the_404_page(web: TestClient, user: UserFactory) -> None:
    as_user(web, user, "ann", "admin")
    for ref in ("no-such-tenant", "0000dead-0000-7000-8000-000000000000", "x" * 80, "bad%01ref"):
        page = web.get(f"/tenants/{ref}")
        assert page.status_code == 404, ref
        assert "text/html" in page.headers["content-type"]
        assert "Not found" in page.text
        assert 'href="/tenants"' in page.text  # the navigation stays


def test_pages_need_a_session(web: TestClient, actors: Actors) -> None:
    tenant = request_tenant(web, actors.am)
    for path in ("/tenants", f"/tenants/{tenant['name']}"):
        r = web.get(path, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=")
    r = web.post(
        f"/tenants/{tenant['name']}/actions/offboard", data={"reason": "x"}, follow_redirects=False
    )
    assert r.status_code in (303, 403)
    assert state_of(web, actors, tenant["id"])["state"] == "requested"


# ------------------------------------------------------------------------ the profile


def test_the_profile_shows_the_whole_record(
    web: TestClient, actors: Actors, user: UserFactory, clock: Clock
) -> None:
    tenant = request_tenant(
        web,
        actors.am,
        name="profiled",
        display_name="Profiled GmbH",
        business_owner="Boss@Profiled.example",
        compliance_classification="restricted",
        region="eu-west-1",
        tier="premium",
        monthly_budget=1234.5,
        currency="CHF",
        contacts=["a@profiled.example", "b@profiled.example"],
        ticket_ref="RITM0099999",
    )
    as_user(web, user, "oscar", "ops_engineer")
    page = web.get(f"/tenants/{tenant['id']}")  # by id as well as by name
    assert page.status_code == 200, page.text
    profile = section(page.text, "profile")
    for text in (
        "profiled",
        "Profiled GmbH",
        "requested",
        "premium",
        "eu-west-1",
        "restricted",
        "boss@profiled.example",
        "a@profiled.example, b@profiled.example",
        "1234.50 CHF",
        "RITM0099999",
        "amy",
        tenant["id"],
        "2030-01-01 09:00 UTC",
    ):
        assert text in profile, text
    assert f"<dd data-version>{tenant['version']}</dd>" in profile
    assert "Approved" not in profile
    assert "First active" not in profile

    # The milestones, once reached.
    clock.advance(minutes=10)
    for state in (S.APPROVED, S.PROVISIONING, S.VERIFYING, S.ACTIVE):
        ok(PATH[state][1](web, actors, tenant["id"]))
    profile = section(web.get(f"/tenants/{tenant['id']}").text, "profile")
    at = '<time datetime="2030-01-01T09:10:00+00:00">2030-01-01 09:10 UTC</time>'
    assert f"<dt>Approved</dt><dd>{at}</dd>" in profile
    assert f"<dt>First active</dt><dd>{at}</dd>" in profile


# ------------------------------------------------------------------------ the actions

ACTIVE_ACTIONS = {
    "ops_engineer": {"suspend"},
    "security": {"suspend"},
    "account_manager": {"offboard"},
    "admin": {"suspend", "offboard"},
    "auditor": set(),
    "governance": set(),
    "finance": set(),
    "qa": set(),
}


@pytest.mark.parametrize(("role", "expected"), sorted(ACTIVE_ACTIONS.items()))
def test_each_role_sees_exactly_its_actions_on_an_active_tenant(
    web: TestClient,
    actors: Actors,
    user: UserFactory,
    clock: Clock,
    role: str,
    expected: set[str],
) -> None:
    tenant = tenant_in(web, actors, S.ACTIVE)
    as_user(web, user, "viewer", role)
    page = web.get(f"/tenants/{tenant['name']}")
    assert page.status_code == 200, page.text
    assert actions_of(page.text) == expected
    if not expected:
        assert "data-no-actions" in page.text
    for name in expected:
        form = re.search(rf'<form [^>]*data-action="{name}".*?</form>', page.text, re.S)
        assert form
        assert f'action="/tenants/{tenant["name"]}/actions/{name}"' in form.group(0)
        assert 'name="csrf_token"' in form.group(0)
        assert f'name="version" value="{tenant["version"]}"' in form.group(0)


@pytest.mark.parametrize(
    ("state", "role", "expected"),
    [
        (S.SUSPENDED, "account_manager", {"request-reactivation", "offboard"}),
        (S.SUSPENDED, "ops_engineer", {"request-reactivation"}),
        (S.SUSPENDED, "governance", set()),
        (S.VERIFYING, "qa", {"verified", "verification_failed"}),
        (S.VERIFYING, "ops_engineer", set()),  # the API's STEP_ROLES: verification is QA's
        (S.APPROVED, "ops_engineer", {"start_provisioning"}),
        (S.APPROVED, "account_manager", {"offboard"}),
        (S.REQUESTED, "admin", set()),  # approvals are the inbox's
        (S.OFFBOARDING, "admin", {"archive"}),
        (S.ARCHIVED, "admin", set()),
    ],
)
def test_actions_follow_the_lifecycle_and_the_role_table(
    web: TestClient,
    actors: Actors,
    user: UserFactory,
    state: S,
    role: str,
    expected: set[str],
) -> None:
    tenant = tenant_in(web, actors, state)
    as_user(web, user, "viewer", role)
    assert actions_of(web.get(f"/tenants/{tenant['name']}").text) == expected


def test_a_pending_reactivation_is_not_offered_again(
    web: TestClient, actors: Actors, user: UserFactory
) -> None:
    tenant = tenant_in(web, actors, S.SUSPENDED)
    ok(request_reactivation(web, tenant["id"], actors.am), 201)
    as_user(web, user, "viewer", "account_manager")
    page = web.get(f"/tenants/{tenant['name']}")
    assert actions_of(page.text) == {"offboard"}
    approvals = section(page.text, "approvals")
    assert 'data-approval="reactivation"' in approvals
    assert 'href="/approvals"' in approvals


def test_ops_suspends_through_the_page_and_it_is_audited(
    web: TestClient, actors: Actors, user: UserFactory, db: Database
) -> None:
    tenant = tenant_in(web, actors, S.ACTIVE)
    csrf = as_user(web, user, "oscar", "ops_engineer")
    r = web.post(
        f"/tenants/{tenant['name']}/actions/suspend",
        data={
            "csrf_token": csrf,
            "version": str(tenant["version"]),
            "reason": "card declined",
            "incident_ref": "INC0042",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/tenants/{tenant['name']}?done=suspend"
    assert state_of(web, actors, tenant["id"])["state"] == "suspended"
    with db.read() as session:
        entry = session.execute(
            select(AuditEntry)
            .where(AuditEntry.tenant_id == tenant["id"])
            .order_by(AuditEntry.seq.desc())
            .limit(1)
        ).scalar_one()
    assert entry.action == "tenant.suspended"
    assert entry.actor == "oscar"
    assert entry.detail["reason"] == "card declined"
    assert entry.detail["incident_ref"] == "INC0042"
    assert entry.detail["run_id"]  # the suspension runbook started, as through the API

    page = web.get(r.headers["location"])
    assert 'data-done="suspend"' in page.text
    assert 'data-state="suspended"' in page.text
    assert actions_of(page.text) == {"request-reactivation"}


def test_a_tenant_owner_requests_reactivation_through_the_page(
    web: TestClient, actors: Actors, user: UserFactory
) -> None:
    tenant = tenant_in(web, actors, S.SUSPENDED)
    csrf = as_user(web, user, "olga", "tenant_owner", tenant=tenant["name"])
    r = web.post(
        f"/tenants/{tenant['name']}/actions/request-reactivation",
        data={"csrf_token": csrf, "reason": "we paid"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    requests = ok(web.get(f"{TENANTS}/{tenant['id']}/approvals", headers=actors.admin))
    pending = [a for a in requests if a["kind"] == "reactivation"]
    assert [(a["status"], a["requested_by"], a["reason"]) for a in pending] == [
        ("pending", "olga", "we paid")
    ]
    assert actions_of(web.get(f"/tenants/{tenant['name']}").text) == set()  # pending

    # Approved: still suspended while its run restores it, and not offered again.
    ok(decide_reactivation(web, tenant["id"], pending[0]["id"], actors.gov))
    page = web.get(f"/tenants/{tenant['name']}")
    assert 'data-state="suspended"' in page.text
    assert actions_of(page.text) == set()
    assert reactivated(web.app.state.db, tenant["id"]) == "active"  # type: ignore[attr-defined]


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    web: TestClient, actors: Actors, user: UserFactory, db: Database
) -> None:
    tenant = tenant_in(web, actors, S.ACTIVE)
    csrf = as_user(web, user, "oscar", "ops_engineer")
    before = audit_count(db, tenant["id"])
    for data in (
        {"reason": "no token", "version": str(tenant["version"])},
        {"reason": "wrong token", "csrf_token": csrf[::-1]},
    ):
        r = web.post(f"/tenants/{tenant['name']}/actions/suspend", data=data)
        assert r.status_code == 403
        assert "Forbidden" in r.text
    assert state_of(web, actors, tenant["id"])["state"] == "active"
    assert audit_count(db, tenant["id"]) == before


@pytest.mark.parametrize(
    ("role", "state", "action", "form", "status", "says"),
    [
        # Not one of the route's roles (a forged form: the page offers nothing).
        ("auditor", S.ACTIVE, "suspend", {"reason": "x"}, 403, "ops_engineer"),
        # A recorded step needs the STEP_ROLES role too.
        ("ops_engineer", S.VERIFYING, "verified", {}, 403, "qa"),
        # The lifecycle refuses it in this state.
        ("admin", S.REQUESTED, "suspend", {"reason": "x"}, 409, "cannot suspend"),
        # The form is incomplete.
        ("ops_engineer", S.ACTIVE, "suspend", {"reason": "  "}, 422, "Reason"),
        # The tenant moved since the page was shown.
        ("ops_engineer", S.ACTIVE, "suspend", {"reason": "x", "version": "1"}, 412, "version"),
    ],
)
def test_a_refused_action_says_why_next_to_the_form_and_changes_nothing(
    web: TestClient,
    actors: Actors,
    user: UserFactory,
    db: Database,
    role: str,
    state: S,
    action: str,
    form: dict[str, str],
    status: int,
    says: str,
) -> None:
    tenant = tenant_in(web, actors, state)
    csrf = as_user(web, user, "viewer", role)
    before = audit_count(db, tenant["id"])
    r = web.post(f"/tenants/{tenant['name']}/actions/{action}", data={"csrf_token": csrf, **form})
    assert r.status_code == status, r.text
    alert = re.search(r'<div class="error-box" role="alert".*?</div>', r.text, re.S)
    assert alert, r.text
    assert f'data-failed="{action}"' in alert.group(0)
    assert says in alert.group(0)
    assert "Nothing was changed" in alert.group(0)
    assert "was not done" in alert.group(0)
    after = state_of(web, actors, tenant["id"])
    assert after["state"] == state.value
    assert after["version"] == tenant["version"]
    assert audit_count(db, tenant["id"]) == before


def test_a_second_reactivation_request_is_a_conflict_shown_inline(
    web: TestClient, actors: Actors, user: UserFactory
) -> None:
    tenant = tenant_in(web, actors, S.SUSPENDED)
    csrf = as_user(web, user, "amy2", "account_manager")
    url = f"/tenants/{tenant['name']}/actions/request-reactivation"
    assert web.post(url, data={"csrf_token": csrf, "reason": "paid"}).status_code == 200
    again = web.post(url, data={"csrf_token": csrf, "reason": "paid twice"})
    assert again.status_code == 409
    assert "already pending" in again.text
    requests = ok(web.get(f"{TENANTS}/{tenant['id']}/approvals", headers=actors.admin))
    assert sum(1 for a in requests if a["kind"] == "reactivation") == 1


def test_an_unknown_action_or_tenant_is_a_404(
    web: TestClient, actors: Actors, user: UserFactory
) -> None:
    tenant = tenant_in(web, actors, S.ACTIVE)
    csrf = as_user(web, user, "ann", "admin")
    assert (
        web.post(
            f"/tenants/{tenant['name']}/actions/explode", data={"csrf_token": csrf}
        ).status_code
        == 404
    )
    assert (
        web.post(
            "/tenants/nobody/actions/suspend", data={"csrf_token": csrf, "reason": "x"}
        ).status_code
        == 404
    )
    assert state_of(web, actors, tenant["id"])["state"] == "active"


# ----------------------------------------------------------------- the other sections


def test_a_real_onboarding_shows_its_run_steps_evidence_and_commit(
    web: TestClient,
    actors: Actors,
    user: UserFactory,
    db: Database,
    settings: Settings,
) -> None:
    worker = build_worker(settings, db)
    try:
        tenant = request_tenant(web, actors.am, name="onboarded")
        drain(worker)
        as_user(web, user, "ann", "admin")

        waiting = web.get("/tenants/onboarded")
        approvals = section(waiting.text, "approvals")
        assert 'data-approval="onboarding"' in approvals
        assert "data-gate=" in approvals  # the onboarding run waits at its approval gate
        assert 'href="/approvals"' in approvals

        approve(web, tenant["id"], "governance", actors.gov)
        approve(web, tenant["id"], "security", actors.sec)
        drain(worker)
    finally:
        worker.stop()

    runs = ok(web.get("/api/v1/runs", params={"tenant": tenant["id"]}, headers=actors.admin))
    run = ok(web.get(f"/api/v1/runs/{runs['items'][0]['id']}", headers=actors.admin))
    gitops = next(s for s in run["steps"] if s["name"] == "gitops")
    assert gitops["status"] == "succeeded", run
    sha = gitops["evidence"]["commit"]

    page = web.get("/tenants/onboarded")
    assert page.status_code == 200
    shown = section(page.text, "runs")
    assert f'href="/runs/{run["id"]}"' in shown
    assert "tenant-onboarding" in shown
    for step in run["steps"]:
        assert f'data-step="{step["name"]}"' in shown
    gitops_row = re.search(r'<li data-step="gitops">.*?</li>', shown, re.S)
    assert gitops_row
    assert "succeeded" in gitops_row.group(0)
    assert f"commit: {sha[:12]}…" in gitops_row.group(0)  # the evidence summary

    commits = section(page.text, "commits")
    assert f'data-commit="{sha}"' in commits
    assert "Render, validate and commit" in commits
    assert "data-gate=" not in section(page.text, "approvals")


def test_the_timeline_is_the_audit_trail_newest_first_with_older_pages(
    web: TestClient, actors: Actors, user: UserFactory, db: Database, clock: Clock
) -> None:
    tenant = tenant_in(web, actors, S.SUSPENDED)
    with db.write() as session:
        for n in range(60):
            audit.record(
                session,
                actor=Principal("noter", frozenset({Role.OPS_ENGINEER})),
                action=f"test.note.{n:02d}",
                tenant_id=tenant["id"],
                changes={},
            )
    total = audit_count(db, tenant["id"])
    as_user(web, user, "ada2", "auditor")

    first = section(web.get(f"/tenants/{tenant['name']}").text, "timeline")
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', first)]
    assert len(seqs) == 50
    assert seqs == sorted(seqs, reverse=True)
    assert "test.note.59" in first
    assert "noter" in first
    assert "2030-01-01 09:00 UTC" in first
    older = re.search(r'href="([^"]+)"[^>]*data-older', first)
    assert older

    second = section(web.get(older.group(1)).text, "timeline")
    more = [int(s) for s in re.findall(r'data-seq="(\d+)"', second)]
    assert len(more) == total - 50
    assert max(more) < min(seqs)
    assert "tenant.requested" in second  # the first entry of all, on the last page
    assert "data-older" not in second


def test_the_timeline_and_notifications_follow_the_apis_readers(
    web: TestClient, actors: Actors, user: UserFactory, db: Database, clock: Clock
) -> None:
    tenant = tenant_in(web, actors, S.ACTIVE)
    for n in range(25):
        clock.advance(seconds=1)  # ids order by time: one message a second
        with db.write() as session:
            notifications.enqueue(
                session,
                notifications.NewMessage(
                    idempotency_key=f"test-{tenant['id']}-{n}",
                    tenant_id=tenant["id"],
                    tenant_name=tenant["name"],
                    run_id=None,
                    template="state_changed",
                    audience="stakeholders",
                    recipients=("owner@acme.example",),
                    subject=f"Tenant notice {n:02d}",
                    body="body",
                ),
                deliver=False,
            )
    as_user(web, user, "oscar", "ops_engineer")  # reads notifications, not the audit trail
    page = web.get(f"/tenants/{tenant['name']}").text
    assert "data-seq=" not in section(page, "timeline")
    assert "auditors and admins" in section(page, "timeline")
    notes = section(page, "notifications")
    assert "data-notification=" in notes
    messages = ok(
        web.get("/api/v1/notifications", params={"tenant": tenant["id"]}, headers=actors.admin)
    )["items"]
    assert len(messages) == 25
    for message in messages[:20]:  # the latest 20
        assert f'data-notification="{message["id"]}"' in notes
    assert notes.count("data-notification=") == 20
    assert "Tenant notice 24" in notes
    assert "Tenant notice 04" not in notes
    assert "owner@acme.example" in notes

    as_user(web, user, "olga", "tenant_owner", tenant=tenant["id"])
    owner = web.get(f"/tenants/{tenant['name']}").text
    assert "data-notification=" not in section(owner, "notifications")
    assert "data-seq=" not in section(owner, "timeline")


def test_costs_for_cost_readers_only_with_charts(
    web: TestClient,
    actors: Actors,
    user: UserFactory,
    auth: TokenFactory,
    clock: Clock,
    tmp_path: Path,
) -> None:
    spender = tenant_in(web, actors, S.ACTIVE, name="spender", monthly_budget=100)
    tenant_in(web, actors, S.ACTIVE, name="saver")
    path = write_csv(tmp_path / "jan.csv", [tagged("spender", "60")])
    r = web.post(
        "/api/v1/finops/imports",
        content=path.read_bytes(),
        headers={**auth("fiona", "finance"), "content-type": "text/csv"},
        params={"filename": path.name},
    )
    assert r.status_code == 201, r.text

    as_user(web, user, "fin", "finance")
    costs = section(web.get("/tenants/spender").text, "costs")
    assert "60.00 EUR" in costs
    assert "100.00 EUR" in costs
    assert "60.0 %" in costs
    assert costs.count("<svg") >= 2
    assert 'role="img"' in costs
    assert "<desc" in costs
    assert "No cost data yet" in section(web.get("/tenants/saver").text, "costs")

    as_user(web, user, "olga", "tenant_owner", tenant=spender["id"])
    assert "60.00 EUR" in section(web.get("/tenants/spender").text, "costs")

    as_user(web, user, "oscar", "ops_engineer")
    assert 'id="costs"' not in web.get("/tenants/spender").text
