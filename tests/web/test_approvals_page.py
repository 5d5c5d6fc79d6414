"""The approvals inbox as its users meet it: who sees what, deciding, and every refusal.

Tenants are requested through the API (bearer tokens), decided through the
page (the session of a local user with the same name); the state is read back
through the API or the store. Both stores.
"""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.runbooks import engine
from tenantops.runbooks.spec import Loaded, parse
from tenantops.runbooks.worker import Worker
from tenantops.tenants.lifecycle import TenantState
from tenantops.web import inbox
from tenantops.wiring import build_actions
from tests import flows
from tests.conftest import Actors, Clock, TokenFactory
from tests.web.conftest import UserFactory
from tests.web.conftest import sign_in as first_sign_in

FINANCE_GATED = parse("""
id: web-finance-gated
version: "1.0"
title: Spend check
steps:
  - {name: sign-off, title: Spend signed off,
     gate: {roles: [finance], prompt: "Is the spend right?"}}
  - {name: finish, action: noop, params: {x: 1}}
""")

SIGNAL_GATES = parse("""
id: web-signal-gates
version: "1.0"
title: Signal gates
inputs: {which: {type: string}}
steps:
  - {name: hold, gate: {roles: [finance], signal: alert_resolved, manual: true,
     prompt: "Close the wait by hand"}}
  - {name: closed, gate: {roles: [finance], signal: alert_resolved, prompt: "Only the signal"}}
""")

AMY = Principal("amy", frozenset({Role.ACCOUNT_MANAGER}))


def sign_in(web: TestClient, username: str) -> str:
    """Sign in as ``username``, signed out of whoever was before; the session's CSRF token."""
    web.cookies.clear()
    return first_sign_in(web, username)


def page(web: TestClient) -> str:
    r = web.get("/approvals")
    assert r.status_code == 200, r.text
    assert r.headers["content-security-policy"].startswith("default-src 'self'")
    return r.text


def yours(html: str) -> str:
    """The "Yours to decide" part of the page."""
    start = html.index('id="yours"')
    end = html.find('id="others"', start)
    return html[start : end if end >= 0 else len(html)]


def others(html: str) -> str:
    """The "Waiting for others" part of the page ('' when there is none)."""
    start = html.find('id="others"')
    return html[start:] if start >= 0 else ""


def row(html: str, key: str) -> str:
    """The table row of item ``key``."""
    match = re.search(rf'<tr id="{re.escape(key)}">(.*?)</tr>', html, re.S)
    assert match, f"no row {key} on the page"
    return match.group(1)


def hidden(html: str, key: str) -> dict[str, str]:
    """The hidden fields of the decision form of item ``key``."""
    fields = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', row(html, key))
    )
    assert fields, f"row {key} has no decision form"
    return fields


def decide(web: TestClient, fields: dict[str, str], decision: str, comment: str = "") -> str:
    """Press a button of a decision form; the inbox the browser lands on.

    Done: a redirect to the inbox. Refused: the inbox at once (422), nothing changed.
    """
    r = web.post(
        "/approvals/decide",
        data={**fields, "decision": decision, "comment": comment},
        follow_redirects=False,
    )
    if r.status_code == 422:
        assert "tenantops_flash" not in r.headers.get("set-cookie", "")
        return r.text
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/approvals"
    return page(web)


def flash(html: str) -> str:
    match = re.search(r'<div class="inbox-flash (ok|error)"[^>]*>\s*<p>(.*?)</p>', html, re.S)
    assert match, "no flash message"
    return f"{match.group(1)}: {unescape(match.group(2))}"


def typed_back(html: str, key: str) -> str:
    """The comment the form of ``key`` shows already typed."""
    match = re.search(rf'<textarea id="comment-{re.escape(key)}"[^>]*>(.*?)</textarea>', html, re.S)
    assert match, f"no comment box for {key}"
    return unescape(match.group(1))


def tenant(web: TestClient, tid: str, who: dict[str, str]) -> dict[str, Any]:
    return flows.ok(web.get(f"/api/v1/tenants/{tid}", headers=who))


def approvals(web: TestClient, tid: str, who: dict[str, str]) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = flows.ok(
        web.get(f"/api/v1/tenants/{tid}/approvals", headers=who)  # type: ignore[arg-type]
    )
    return body


def onboarding_key(web: TestClient, tid: str, who: dict[str, str]) -> str:
    [request] = approvals(web, tid, who)
    return f"a-{request['id']}"


@pytest.mark.parametrize(
    "comment",
    [
        "risk accepted, see RISK-9: " + "the long story of why " * 89,  # 1,985 characters
        "риск принят: " + "длинная история о том, почему " * 60,  # 1,813, 6-9 bytes each encoded
    ],
    ids=["long", "cyrillic"],
)
def test_a_refused_decision_gives_back_the_whole_comment_in_its_form(
    web: TestClient, actors: Actors, user: UserFactory, comment: str
) -> None:
    """Stale, refused: the inbox at once with the comment whole, however long, in any script."""
    tid = flows.request_tenant(web, actors.am, name="gamma-shop")["id"]
    key = onboarding_key(web, tid, actors.am)
    user("gus", "governance")
    user("sue", "security")
    sign_in(web, "sue")
    stale = hidden(page(web), key)
    sign_in(web, "gus")
    decide(web, hidden(page(web), key), "approve", "fine")
    csrf = sign_in(web, "sue")

    html = decide(web, {**stale, "csrf_token": csrf}, "approve", comment)

    assert "Not done: tenant gamma-shop is at version" in flash(html)
    assert typed_back(html, key) == comment
    assert [d["principal"] for d in approvals(web, tid, actors.am)[0]["decisions"]] == ["gus"]


# --- tenant onboarding --------------------------------------------------------------


def test_governance_sees_the_onboarding_of_a_tenant_someone_else_created(
    web: TestClient, actors: Actors, user: UserFactory, clock: Clock
) -> None:
    body = flows.request_tenant(web, actors.am, name="acme-shop")
    key = onboarding_key(web, body["id"], actors.am)
    clock.advance(hours=2)
    sign_in(web, user("gus", "governance"))
    html = page(web)
    item = row(yours(html), key)
    assert "Onboarding of tenant acme-shop" in item
    assert '<a href="/tenants/acme-shop">acme-shop</a>' in item
    assert "amy" in item
    assert "2030-01-01 09:00 UTC" in item
    assert "2.0 h" in item
    assert 'value="approve"' in item
    assert 'value="reject"' in item
    assert '<label for="comment-' in item
    assert hidden(html, key)["role"] == "governance"
    assert "Tenant onboarding approvals" in html
    assert others(html) == ""


def test_an_empty_yours_says_how_many_wait_for_others_below(
    web: TestClient, actors: Actors, user: UserFactory
) -> None:
    # amy asked for two tenants and may decide neither: "nothing waits" alone would read as
    # "nothing is pending" above the list of her two requests.
    for name in ("one-shop", "two-shop"):
        flows.request_tenant(web, actors.am, name=name)
    sign_in(web, user("amy", "account_manager"))
    html = page(web)
    assert "<p>Nothing waits for your decision; 2 wait for others, below.</p>" in yours(html)
    assert others(html).count('<tr id="a-') == 2
    # Nothing for her and nothing she is part of: the sentence alone.
    sign_in(web, user("quinn", "qa"))
    html = page(web)
    assert "<p>Nothing waits for your decision.</p>" in html
    assert others(html) == ""


def test_an_admin_or_auditor_sees_every_pending_item_as_waiting_for_others(
    web: TestClient, actors: Actors, user: UserFactory, auth: TokenFactory
) -> None:
    for name in ("one-shop", "two-shop"):
        flows.request_tenant(web, actors.am, name=name)
    for viewer in (user("ada", "admin"), user("audrey", "auditor")):
        sign_in(web, viewer)
        html = page(web)
        assert "<p>Nothing waits for your decision; 2 wait for others, below.</p>" in yours(html)
        assert others(html).count('<tr id="a-') == 2
    # Bound to a tenant, an admin oversees no one else's queue.
    sign_in(web, user("tad", "admin", tenant="one-shop"))
    assert others(page(web)) == ""


def test_the_creator_sees_the_sod_reason_instead_of_buttons(
    web: TestClient, actors: Actors, user: UserFactory, auth: TokenFactory
) -> None:
    # amy requested the tenant and also holds governance: the rules still stop her.
    body = flows.request_tenant(web, actors.am)
    key = onboarding_key(web, body["id"], actors.am)
    csrf = sign_in(web, user("amy", "account_manager", "governance"))
    html = page(web)
    assert key not in yours(html)
    item = row(others(html), key)
    assert (
        "You requested this tenant: a different person must approve it "
        "(segregation of duties); waiting for governance and security." in item
    )
    assert "<form" not in item

    # A forged form is refused by the same rule, and nothing changes.
    fields = {
        "csrf_token": csrf,
        "kind": "onboarding",
        "tenant": body["id"],
        "role": "governance",
    }
    html = decide(web, fields, "approve")
    assert flash(html).startswith("error: Not done: you requested this change")
    assert flash(html).endswith("Nothing was changed.")
    assert tenant(web, body["id"], actors.am)["state"] == "requested"
    assert approvals(web, body["id"], actors.am)[0]["decisions"] == []


def test_approve_with_a_comment_is_audited_and_the_second_role_completes_it(
    web: TestClient, actors: Actors, user: UserFactory, db: Database
) -> None:
    body = flows.request_tenant(web, actors.am, name="beta-shop")
    tid = body["id"]
    key = onboarding_key(web, tid, actors.am)
    user("gus", "governance")
    user("sue", "security")

    sign_in(web, "sue")
    stale = hidden(page(web), key)  # sue opens the page first ...

    sign_in(web, "gus")
    html = decide(web, hidden(page(web), key), "approve", "risk accepted: RISK-9")
    assert flash(html) == (
        "ok: You approved the onboarding of beta-shop as governance; the tenant is requested."
    )
    assert key not in yours(html)
    assert "Already approved by you as governance; security must approve" in row(others(html), key)
    with db.read() as session:
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "tenant.approval.recorded")
        ).scalar_one()
    assert entry.actor == "gus"
    assert entry.detail["comment"] == "risk accepted: RISK-9"
    assert entry.detail["role"] == "governance"

    # ... and presses after gus decided: refused as stale, nothing changed.
    csrf = sign_in(web, "sue")
    html = decide(web, {**stale, "csrf_token": csrf}, "approve")
    assert "Not done: tenant beta-shop is at version" in flash(html)
    assert [d["principal"] for d in approvals(web, tid, actors.am)[0]["decisions"]] == ["gus"]

    assert typed_back(html, key) == ""  # no comment typed, none put back
    item = row(yours(html), key)
    assert "So far: governance: approved by gus" in item
    html = decide(web, hidden(html, key), "approve", "fine")
    assert flash(html) == (
        "ok: You approved the onboarding of beta-shop as security; the tenant is approved."
    )
    assert key not in html
    assert tenant(web, tid, actors.am)["state"] == "approved"
    sign_in(web, "gus")
    assert key not in page(web)


def test_reject_rejects_the_tenant(web: TestClient, actors: Actors, user: UserFactory) -> None:
    tid = flows.request_tenant(web, actors.am, name="gamma-shop")["id"]
    key = onboarding_key(web, tid, actors.am)
    sign_in(web, user("sue", "security"))
    html = decide(web, hidden(page(web), key), "reject", "no data-protection review")
    assert flash(html) == (
        "ok: You rejected the onboarding of gamma-shop as security; the tenant is rejected."
    )
    assert key not in html
    assert tenant(web, tid, actors.am)["state"] == "rejected"
    [request] = approvals(web, tid, actors.am)
    assert request["decisions"][0]["comment"] == "no data-protection review"


def test_a_person_with_both_roles_chooses_the_role(
    web: TestClient, actors: Actors, user: UserFactory
) -> None:
    tid = flows.request_tenant(web, actors.am)["id"]
    key = onboarding_key(web, tid, actors.am)
    sign_in(web, user("bea", "governance", "security"))
    item = row(yours(page(web)), key)
    assert '<label for="role-' in item
    assert '<option value="governance">' in item
    assert '<option value="security">' in item
    html = decide(web, {**hidden(page(web), key), "role": "security"}, "approve")
    assert "as security" in flash(html)
    # Her second approval would break distinct approvers: no buttons, the reason instead.
    assert key not in yours(html)
    assert "Already approved by you as security; governance must approve" in row(others(html), key)


def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(
    web: TestClient, actors: Actors, user: UserFactory
) -> None:
    tid = flows.request_tenant(web, actors.am)["id"]
    key = onboarding_key(web, tid, actors.am)
    sign_in(web, user("gus", "governance"))
    fields = {k: v for k, v in hidden(page(web), key).items() if k != "csrf_token"}
    for extra in ({}, {"csrf_token": "forged"}):
        r = web.post(
            "/approvals/decide",
            data={**fields, **extra, "decision": "approve"},
            follow_redirects=False,
        )
        assert r.status_code == 403
        assert "The form expired or did not come from this site" in r.text
    assert approvals(web, tid, actors.am)[0]["decisions"] == []
    assert key in yours(page(web))


def test_without_a_session_the_inbox_sends_to_login(web: TestClient) -> None:
    r = web.get("/approvals", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fapprovals"


# --- reactivation -----------------------------------------------------------------------


def test_reactivation_appears_for_governance_and_approving_starts_it(
    web: TestClient, actors: Actors, user: UserFactory
) -> None:
    body = flows.tenant_in(web, actors, TenantState.SUSPENDED, name="delta-shop")
    tid = body["id"]
    request = flows.ok(flows.request_reactivation(web, tid, actors.am, "invoice paid"), 201)
    key = f"a-{request['id']}"

    sign_in(web, user("sue", "security"))
    assert key not in page(web)  # not security's to decide

    sign_in(web, user("gus", "governance"))
    html = page(web)
    item = row(yours(html), key)
    assert "Reactivation of suspended tenant delta-shop" in item
    assert "invoice paid" in item
    assert "Tenant reactivation approvals" in html
    html = decide(web, hidden(html, key), "approve", "paid in full")
    assert flash(html) == (
        "ok: You approved the reactivation of delta-shop; it stays suspended until its"
        " reactivation run has restored network, queues, secrets and access."
    )
    assert key not in html
    assert tenant(web, tid, actors.am)["state"] == "suspended"
    assert flows.reactivated(web.app.state.db, tid) == "active"  # type: ignore[attr-defined]


# --- runbook gates ------------------------------------------------------------------------


def start(db: Database, loaded: Loaded, *, tenant_id: str, **inputs: Any) -> str:
    with db.write() as session:
        run = engine.start_run(
            session, loaded=loaded, actor=AMY, tenant_id=tenant_id, inputs=inputs
        )
        return run.id


def run_of(web: TestClient, run_id: str, who: dict[str, str]) -> dict[str, Any]:
    return flows.ok(web.get(f"/api/v1/runs/{run_id}", headers=who))


def test_a_runbook_gate_appears_for_its_role_and_approving_signals_the_run(
    web: TestClient, actors: Actors, user: UserFactory, db: Database, auth: TokenFactory
) -> None:
    body = flows.tenant_in(web, actors, TenantState.ACTIVE, name="eps-shop")
    run_id = start(db, FINANCE_GATED, tenant_id=body["id"])
    key = f"g-{run_id}-sign-off"

    sign_in(web, user("gus", "governance"))
    assert key not in page(web)  # a finance gate is not governance's

    sign_in(web, user("fay", "finance"))
    html = page(web)
    item = row(yours(html), key)
    assert "Spend check: Spend signed off" in item
    assert "Is the spend right?" in item
    assert '<a href="/tenants/eps-shop">eps-shop</a>' in item
    assert "Runbook gates" in html
    html = decide(web, hidden(html, key), "approve", "within budget")
    assert (
        flash(html)
        == "ok: You approved gate 'sign-off' of run web-finance-gated; the run is running."
    )
    assert key not in html
    step = run_of(web, run_id, actors.auditor)["steps"][0]
    assert (step["status"], step["decided_by"]) == ("succeeded", "fay")
    assert step["evidence"]["comment"] == "within budget"

    # The starter of a run sees why they cannot decide its gate.
    other = start(db, FINANCE_GATED, tenant_id=body["id"])
    sign_in(web, user("amy", "account_manager", "finance"))
    item = row(others(page(web)), f"g-{other}-sign-off")
    assert "You started this run: a different person must decide its gate" in item


def test_a_manual_signal_gate_is_decidable_and_a_signal_only_gate_is_not_listed(
    web: TestClient, actors: Actors, user: UserFactory, db: Database
) -> None:
    body = flows.tenant_in(web, actors, TenantState.ACTIVE)
    run_id = start(db, SIGNAL_GATES, tenant_id=body["id"], which="x")
    sign_in(web, user("fay", "finance"))
    html = page(web)
    assert "Close the wait by hand" in row(yours(html), f"g-{run_id}-hold")
    html = decide(web, hidden(html, f"g-{run_id}-hold"), "approve")
    assert flash(html).startswith("ok: You approved gate 'hold'")
    # The run now waits on a gate only the alert's signal opens: nobody's inbox.
    assert run_of(web, run_id, actors.auditor)["current_step"] == "closed"
    assert run_id not in page(web)


def test_a_rejected_gate_fails_the_run(
    web: TestClient, actors: Actors, user: UserFactory, db: Database
) -> None:
    body = flows.tenant_in(web, actors, TenantState.ACTIVE)
    run_id = start(db, FINANCE_GATED, tenant_id=body["id"])
    csrf = sign_in(web, user("fay", "finance"))
    html = decide(web, hidden(page(web), f"g-{run_id}-sign-off"), "reject", "over budget")
    assert flash(html).endswith("the run is failed.")
    assert run_of(web, run_id, actors.auditor)["status"] == "failed"
    # Deciding it again is refused with the engine's reason; nothing changes.
    fields = {"csrf_token": csrf, "kind": "gate", "run_id": run_id, "step": "sign-off"}
    html = decide(web, fields, "approve")
    assert flash(html) == f"error: Not done: run {run_id} is failed. Nothing was changed."
    assert run_of(web, run_id, actors.auditor)["status"] == "failed"


def test_a_decision_its_gate_check_refuses_is_shown_with_the_comment_typed(
    web: TestClient,
    actors: Actors,
    user: UserFactory,
    db: Database,
    settings: Settings,
    auth: TokenFactory,
) -> None:
    """The Access Review's decide gate checks the comment: refused, the gate still waits."""
    tid = flows.request_tenant(web, actors.am)["id"]
    started = web.post(
        f"/api/v1/tenants/{tid}/access-reviews", json={}, headers=auth("sam", "security")
    )
    run_id = flows.ok(started, 201)["id"]
    worker = Worker(db, build_actions(settings, db))
    try:
        flows.drain(worker)
        sue = auth("sue", "security")
        # The prompt names this run's snapshot, the run is a link away (not placeholders).
        sign_in(web, user("sam2", "security"))
        members = row(yours(page(web)), f"g-{run_id}-confirm-members")
        snapshot = f"/api/v1/tenants/{tid}/access-reviews/{run_id}/snapshot"
        assert snapshot in members
        assert "{{" not in members
        assert f'href="/runs/{run_id}"' in members
        assert web.get(snapshot).status_code == 200  # the session may read it
        steps = run_of(web, run_id, actors.auditor)["steps"]
        assert snapshot in next(
            s["gate"]["prompt"] for s in steps if s["name"] == "confirm-members"
        )
        for gate in ("confirm-members", "confirm-tokens"):
            flows.ok(
                web.post(
                    f"/api/v1/runs/{run_id}/gates/{gate}", json={"decision": "approve"}, headers=sue
                )
            )
        key = f"g-{run_id}-decide"
        sign_in(web, user("sue", "security"))
        typed = "revoke member:nobody@example.com; left"
        html = decide(web, hidden(page(web), key), "approve", typed)
        shown = flash(html)
        assert shown.startswith(
            "error: Not done: nothing was revoked: member:nobody@example.com is not in the"
            " reviewed snapshot"
        )
        assert shown.endswith("Nothing was changed.")
        assert typed_back(html, key) == typed  # in its form again, to be corrected
        assert key in yours(html)  # still waiting for a decision, to be corrected
        assert run_of(web, run_id, actors.auditor)["current_step"] == "decide"

        html = decide(web, hidden(html, key), "approve", "keep; all expected")
        assert flash(html).startswith("ok: You approved gate 'decide' of run access-review")
        flows.drain(worker)
    finally:
        worker.stop()
    run = run_of(web, run_id, actors.auditor)
    assert run["status"] == "succeeded"
    assert run["steps"][-2]["evidence"]["outcome"] == "keep"


# --- break glass --------------------------------------------------------------------------


BREAK_GLASS = {
    "reason": "database failover stuck, need admin to reassign",
    "incident_ref": "INC0042",
    "duration": "30m",
}


def test_a_break_glass_review_is_for_security_not_for_who_used_the_access(
    web: TestClient,
    auth: TokenFactory,
    user: UserFactory,
    db: Database,
    settings: Settings,
    clock: Clock,
) -> None:
    grant = flows.ok(
        web.post("/api/v1/break-glass", json=BREAK_GLASS, headers=auth("oli", "ops_engineer")),
        201,
    )
    worker = Worker(db, build_actions(settings, db))
    try:
        for _ in range(5):
            worker.run_once()
        clock.advance(minutes=30)
        for _ in range(5):
            worker.run_once()
    finally:
        worker.stop()
    key = f"g-{grant['run_id']}-review"

    # oli used the access; even holding security he may not review it.
    sign_in(web, user("oli", "ops_engineer", "security"))
    html = page(web)
    assert key not in yours(html)
    assert (
        "You used this emergency access: a different person must review it "
        "(segregation of duties)" in row(others(html), key)
    )

    sign_in(web, user("sue", "security"))
    html = page(web)
    item = row(yours(html), key)
    assert "Review of emergency access breakglass:oli (INC0042)" in item
    assert "all tenants" in item
    assert "Break-glass post-use reviews" in html
    html = decide(web, hidden(html, key), "approve", "justified, used as stated")
    assert flash(html) == (
        "ok: You approved the break-glass review of run emergency-break-glass; "
        "the run is succeeded."
    )
    assert key not in html
    review = run_of(web, grant["run_id"], auth("ada", "auditor"))["steps"][-1]
    assert (review["decided_by"], review["evidence"]["comment"]) == (
        "sue",
        "justified, used as stated",
    )


# --- tenant scope -------------------------------------------------------------------------


def test_a_tenant_owner_sees_nothing_of_other_tenants(
    web: TestClient, actors: Actors, user: UserFactory, auth: TokenFactory, db: Database
) -> None:
    own = flows.tenant_in(web, actors, TenantState.SUSPENDED, name="own-shop")
    foreign = flows.request_tenant(web, actors.am, name="foreign-shop")
    start(db, FINANCE_GATED, tenant_id=foreign["id"])
    olga = auth("olga", "tenant_owner", tenant=own["id"])
    request = flows.ok(flows.request_reactivation(web, own["id"], olga, "invoice paid"), 201)

    csrf = sign_in(web, user("olga", "tenant_owner", tenant=own["id"]))
    html = page(web)
    assert "foreign-shop" not in html
    assert "Spend check" not in html
    assert "Nothing waits for your decision; 1 waits for others, below." in html
    # Her own request, waiting for governance.
    item = row(others(html), f"a-{request['id']}")
    assert "own-shop" in item
    assert "waiting for governance" in item

    # Deciding another tenant's approval is refused; nothing changes.
    html = decide(
        web,
        {"csrf_token": csrf, "kind": "onboarding", "tenant": foreign["id"], "role": "governance"},
        "approve",
    )
    assert flash(html).startswith("error: Not done: this decision needs one of")
    assert approvals(web, foreign["id"], actors.am)[0]["decisions"] == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "nonsense"}, "unknown kind of decision"),
        ({"kind": "onboarding", "role": "admin"}, "role:"),
        ({"kind": "onboarding", "role": "governance", "version": "x"}, "not a number"),
    ],
)
def test_a_malformed_form_is_a_message_not_an_error_page(
    web: TestClient, actors: Actors, user: UserFactory, fields: dict[str, str], message: str
) -> None:
    tid = flows.request_tenant(web, actors.am)["id"]
    csrf = sign_in(web, user("gus", "governance"))
    html = decide(web, {"csrf_token": csrf, "tenant": tid, **fields}, "approve")
    assert message in flash(html)
    assert approvals(web, tid, actors.am)[0]["decisions"] == []


def test_the_inbox_is_bounded_and_says_how_many_there_are(
    web: TestClient, actors: Actors, user: UserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox, "LIMIT", 2)  # 200 on the page; three tenants show the cut
    for name in ("one-shop", "two-shop", "three-shop"):
        flows.request_tenant(web, actors.am, name=name)
    sign_in(web, user("gus", "governance"))
    html = page(web)
    assert "Showing 2 of 3 pending items: the oldest 2." in html
    assert "one-shop" in html
    assert "two-shop" in html
    assert "three-shop" not in html
