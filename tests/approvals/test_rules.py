"""Segregation of duties: the pure rules, then the same rules as a user meets them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantops.approvals import service as approvals
from tenantops.approvals.rules import PriorDecision, check_decision, outcome
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.errors import (
    AlreadyDecided,
    Conflict,
    Forbidden,
    SegregationOfDuties,
    Unprocessable,
)
from tenantops.runbooks import engine, spec
from tenantops.tenants import service as tenants
from tenantops.tenants.actions import ENGINE as RUNBOOK_ENGINE
from tenantops.tenants.lifecycle import TenantState
from tests import flows
from tests.conftest import Actors, Clock, TokenFactory

BOTH = ("governance", "security")


def decide(
    decider: str,
    role: str,
    *,
    roles: tuple[str, ...] = BOTH,
    prior: tuple[PriorDecision, ...] = (),
    requested_by: str = "req",
    required: tuple[str, ...] = BOTH,
) -> None:
    check_decision(
        requested_by=requested_by,
        required_roles=required,
        prior=prior,
        decider=decider,
        decider_roles=roles,
        role=role,
    )


# --- pure rules ---------------------------------------------------------------


@pytest.mark.parametrize("role", BOTH)
@pytest.mark.parametrize("other_decided", [False, True], ids=["first", "second"])
def test_requester_never_decides(role: str, other_decided: bool) -> None:
    other = next(r for r in BOTH if r != role)
    prior = (PriorDecision(other, "someone", "approve"),) if other_decided else ()
    with pytest.raises(SegregationOfDuties) as refused:
        decide("req", role, roles=BOTH, prior=prior)
    assert refused.value.status == 403
    assert refused.value.extra["rule"] == "requester-not-approver"
    assert "you requested this change" in refused.value.detail


def test_requester_never_decides_a_single_role_request() -> None:
    with pytest.raises(SegregationOfDuties):
        decide("req", "governance", required=("governance",))


@pytest.mark.parametrize("role", BOTH)
@pytest.mark.parametrize("decision", ["approve", "reject"])
@pytest.mark.parametrize("decider", ["other", "first"])
def test_each_role_is_decided_once(role: str, decision: str, decider: str) -> None:
    prior = (PriorDecision(role, "first", decision),)
    with pytest.raises(AlreadyDecided) as refused:
        decide(decider, role, prior=prior)
    assert refused.value.status == 409
    assert f"the {role} decision was already taken by first ({decision})" in refused.value.detail


@pytest.mark.parametrize(("first_role", "second_role"), [BOTH, BOTH[::-1]])
def test_one_person_cannot_hold_both_approvals_even_with_both_roles(
    first_role: str, second_role: str
) -> None:
    prior = (PriorDecision(first_role, "both", "approve"),)
    with pytest.raises(SegregationOfDuties) as refused:
        decide("both", second_role, roles=BOTH, prior=prior)
    assert refused.value.extra["rule"] == "distinct-approvers"
    assert f"you already decided as {first_role}" in refused.value.detail
    # Someone else holding the second role may.
    decide("other", second_role, roles=(second_role,), prior=prior)


@pytest.mark.parametrize("role", BOTH)
def test_the_role_is_needed(role: str) -> None:
    other = next(r for r in BOTH if r != role)
    for roles in [(), (other,), ("account_manager", "admin")]:
        with pytest.raises(Forbidden) as refused:
            decide("someone", role, roles=roles)
        assert not isinstance(refused.value, SegregationOfDuties)
        assert f"you do not hold the {role} role" in refused.value.detail
    decide("someone", role, roles=(role,))


def test_a_role_the_request_does_not_need_is_unprocessable() -> None:
    with pytest.raises(Unprocessable) as refused:
        decide("gus", "security", required=("governance",))
    assert refused.value.extra == {"param": "role"}


def test_first_decision_of_anyone_else_in_their_role_is_allowed() -> None:
    decide("gus", "governance", roles=("governance",))
    decide("sue", "security", roles=("security", "account_manager"))


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        ((), "pending"),
        ((("governance", "approve"),), "pending"),
        ((("security", "approve"),), "pending"),
        ((("governance", "approve"), ("security", "approve")), "approved"),
        ((("governance", "reject"),), "rejected"),
        ((("security", "reject"),), "rejected"),
        ((("governance", "approve"), ("security", "reject")), "rejected"),
        ((("governance", "reject"), ("security", "approve")), "rejected"),
    ],
)
def test_outcome(decisions: tuple[tuple[str, str], ...], expected: str) -> None:
    taken = [PriorDecision(role, f"p{i}", d) for i, (role, d) in enumerate(decisions)]
    assert outcome(BOTH, taken) == expected


def test_reactivation_needs_only_governance() -> None:
    assert outcome(["governance"], [PriorDecision("governance", "gus", "approve")]) == "approved"


# --- through the API ----------------------------------------------------------


def _create(client: TestClient, who: dict[str, str]) -> str:
    tid: str = flows.request_tenant(client, who)["id"]
    return tid


def _decide(
    client: TestClient, who: dict[str, str], tid: str, role: str, decision: str = "approve"
) -> Any:
    return flows.decide(client, tid, role, who, decision, comment="ok", risk_ref="RISK-7")


def _state(client: TestClient, tid: str, who: dict[str, str]) -> str:
    state: str = client.get(f"/api/v1/tenants/{tid}", headers=who).json()["state"]
    return state


def test_requester_cannot_approve_their_own_tenant(client: TestClient, auth: TokenFactory) -> None:
    amy = auth("amy", "account_manager", "governance", "security")
    tid = _create(client, amy)
    for role in BOTH:
        problem = flows.problem(_decide(client, amy, tid, role), 403)
        assert problem["type"].endswith("/segregation-of-duties")
        assert problem["rule"] == "requester-not-approver"
        assert problem["detail"].startswith("you requested this change, so you cannot decide")
    assert _state(client, tid, amy) == "requested"
    assert client.get(f"/api/v1/tenants/{tid}/approvals", headers=amy).json()[0]["decisions"] == []


def test_one_person_with_both_roles_cannot_give_both_approvals(
    client: TestClient, actors: Actors, auth: TokenFactory
) -> None:
    am = actors.am
    bea = auth("bea", "governance", "security")
    tid = _create(client, am)
    assert _decide(client, bea, tid, "governance").status_code == 200
    problem = flows.problem(_decide(client, bea, tid, "security"), 403)
    assert problem["rule"] == "distinct-approvers"
    assert "must come from a different person" in problem["detail"]
    assert _state(client, tid, am) == "requested"
    # A second person completes it.
    response = _decide(client, actors.sec, tid, "security")
    assert response.json()["state"] == "approved"


def test_deciding_in_a_role_you_do_not_hold(
    client: TestClient, actors: Actors, auth: TokenFactory
) -> None:
    am = actors.am
    tid = _create(client, am)
    problem = flows.problem(_decide(client, actors.gov, tid, "security"), 403)
    assert (
        problem["detail"] == "you do not hold the security role, so you cannot decide as security"
    )
    # Roles the route does not admit at all are refused before the rules are asked.
    problem = flows.problem(
        _decide(client, auth("oli", "ops_engineer", "admin"), tid, "governance"), 403
    )
    assert "needs one of: governance, security" in problem["detail"]
    assert _state(client, tid, am) == "requested"


def test_two_approvals_in_one_role_do_not_approve(
    client: TestClient, actors: Actors, auth: TokenFactory
) -> None:
    am = actors.am
    tid = _create(client, am)
    assert _decide(client, actors.gov, tid, "governance").status_code == 200
    problem = flows.problem(_decide(client, auth("gil", "governance"), tid, "governance"), 409)
    assert problem["detail"] == "the governance decision was already taken by gus (approve)"
    assert _state(client, tid, am) == "requested"


def test_two_approvals_from_two_people_approve(client: TestClient, actors: Actors) -> None:
    am = actors.am
    tid = _create(client, am)
    first = _decide(client, actors.sec, tid, "security")
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "requested"
    second = _decide(client, actors.gov, tid, "governance")
    assert second.json()["state"] == "approved"
    [request] = client.get(f"/api/v1/tenants/{tid}/approvals", headers=am).json()
    assert request["kind"] == "onboarding"
    assert request["status"] == "approved"
    assert request["requested_by"] == "amy"
    assert [(d["role"], d["principal"], d["risk_ref"]) for d in request["decisions"]] == [
        ("security", "sue", "RISK-7"),
        ("governance", "gus", "RISK-7"),
    ]


@pytest.mark.parametrize("first", [None, "governance", "security"])
def test_one_rejection_rejects(client: TestClient, actors: Actors, first: str | None) -> None:
    am = actors.am
    people = {"governance": actors.gov, "security": actors.sec}
    tid = _create(client, am)
    if first is not None:
        assert _decide(client, people[first], tid, first).status_code == 200
    rejecting = next(r for r in BOTH if r != first)
    response = _decide(client, people[rejecting], tid, rejecting, "reject")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "rejected"
    [request] = client.get(f"/api/v1/tenants/{tid}/approvals", headers=am).json()
    assert request["status"] == "rejected"
    # Nobody can approve it afterwards.
    other = next(r for r in BOTH if r != rejecting)
    if first is None:
        problem = flows.problem(_decide(client, people[other], tid, other), 409)
        assert problem["current_state"] == "rejected"


# --- reactivation -------------------------------------------------------------


def _db(client: TestClient) -> Database:
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    return db


def _suspended_tenant(client: TestClient, actors: Actors) -> str:
    tid: str = flows.tenant_in(client, actors, TenantState.SUSPENDED)["id"]
    return tid


def test_reactivation_only_after_governance_approves_that_request(
    client: TestClient, actors: Actors
) -> None:
    tid = _suspended_tenant(client, actors)
    gov, am = actors.gov, actors.am

    # No request yet: nothing to approve.
    problem = flows.problem(flows.decide_reactivation(client, tid, "no-such-request", gov), 404)
    assert "no pending reactivation request" in problem["detail"]

    asked = flows.request_reactivation(client, tid, am)
    assert asked.status_code == 201, asked.text
    request = asked.json()
    assert (request["kind"], request["status"], request["required_roles"]) == (
        "reactivation",
        "pending",
        ["governance"],
    )
    assert _state(client, tid, am) == "suspended"
    # One pending request at a time.
    assert flows.problem(flows.request_reactivation(client, tid, am), 409)["detail"].startswith(
        "a reactivation request"
    )
    # Security is not the role that decides reactivation.
    flows.problem(flows.decide_reactivation(client, tid, request["id"], actors.sec), 403)
    assert _state(client, tid, am) == "suspended"

    response = flows.decide_reactivation(client, tid, request["id"], gov)
    assert response.status_code == 200, response.text
    # Approved: the reactivation run starts; the tenant stays suspended until it ends.
    assert response.json()["state"] == "suspended"
    # The request is spent: it cannot be decided again, nor another one filed meanwhile.
    flows.problem(flows.decide_reactivation(client, tid, request["id"], gov), 404)
    busy = flows.problem(flows.request_reactivation(client, tid, am), 409)
    assert "is being reactivated (run " in busy["detail"]
    assert flows.reactivated(_db(client), tid) == "active"
    problem = flows.problem(flows.decide_reactivation(client, tid, request["id"], gov), 409)
    assert problem["current_state"] == "active"


def test_rejected_reactivation_keeps_the_tenant_suspended(
    client: TestClient, actors: Actors
) -> None:
    tid = _suspended_tenant(client, actors)
    gov, am = actors.gov, actors.am
    first = flows.request_reactivation(client, tid, am).json()["id"]
    response = flows.decide_reactivation(client, tid, first, gov, "reject")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "suspended"
    # The rejected request cannot be approved afterwards; a new one can.
    flows.problem(flows.decide_reactivation(client, tid, first, gov), 404)
    second = flows.request_reactivation(client, tid, am).json()["id"]
    assert flows.decide_reactivation(client, tid, second, gov).json()["state"] == "suspended"
    assert flows.reactivated(_db(client), tid) == "active"
    statuses = [
        (r["kind"], r["status"])
        for r in client.get(f"/api/v1/tenants/{tid}/approvals", headers=am).json()
    ]
    assert statuses == [
        ("onboarding", "approved"),
        ("reactivation", "rejected"),
        ("reactivation", "approved"),
    ]


def test_requester_of_a_reactivation_cannot_approve_it(
    client: TestClient, actors: Actors, auth: TokenFactory
) -> None:
    tid = _suspended_tenant(client, actors)
    olga = auth("olga", "ops_engineer", "governance")
    request_id = flows.request_reactivation(client, tid, olga).json()["id"]
    problem = flows.problem(flows.decide_reactivation(client, tid, request_id, olga), 403)
    assert problem["rule"] == "requester-not-approver"
    assert "you requested this change" in problem["detail"]
    assert _state(client, tid, olga) == "suspended"
    response = flows.decide_reactivation(client, tid, request_id, actors.gov)
    assert response.status_code == 200, response.text
    assert flows.reactivated(_db(client), tid) == "active"


def test_offboarding_cancels_a_pending_reactivation(client: TestClient, actors: Actors) -> None:
    tid = _suspended_tenant(client, actors)
    am = actors.am
    request_id = flows.request_reactivation(client, tid, am).json()["id"]
    response = flows.offboard(client, tid, am, reason="gone")
    assert response.json()["state"] == "offboarding"
    problem = flows.problem(flows.decide_reactivation(client, tid, request_id, actors.gov), 409)
    assert problem["current_state"] == "offboarding"
    kinds = client.get(f"/api/v1/tenants/{tid}/approvals", headers=am).json()
    assert kinds[-1]["status"] == "cancelled"


def test_only_the_approved_request_of_the_tenant_reactivates_it(
    client: TestClient, actors: Actors
) -> None:
    tid = _suspended_tenant(client, actors)
    other = _suspended_tenant(client, actors)
    pending = flows.request_reactivation(client, tid, actors.am).json()["id"]
    theirs = flows.request_reactivation(client, other, actors.am).json()["id"]
    flows.ok(flows.decide_reactivation(client, other, theirs, actors.gov))

    def complete(request_id: str) -> None:
        with _db(client).write() as session:
            tenants.complete_reactivation(
                session, principal=RUNBOOK_ENGINE, ref=tid, request_id=request_id, run_id="r"
            )

    for request_id, says in [
        (pending, "is pending, not approved"),
        (theirs, "no reactivation request"),
        ("no-such-request", "no reactivation request"),
    ]:
        with pytest.raises(Conflict) as refused:
            complete(request_id)
        assert says in refused.value.detail
    assert _state(client, tid, actors.am) == "suspended"


REACTIVATION = "tenant-reactivation"


def _end_runs(client: TestClient, tid: str, runbook_id: str | None = None) -> list[str]:
    """End the tenant's open runs (of one runbook), as a worker finishing them would (no
    worker here); their ids."""
    with _db(client).write() as session:
        ended = [r.id for r in engine.open_runs(session, tenant_id=tid, runbook_id=runbook_id)]
        for run_id in ended:
            engine.cancel(session, run_id=run_id, principal=RUNBOOK_ENGINE, reason="test")
    return ended


def _complete(client: TestClient, tid: str, request_id: str, run_id: str) -> None:
    with _db(client).write() as session:
        tenants.complete_reactivation(
            session, principal=RUNBOOK_ENGINE, ref=tid, request_id=request_id, run_id=run_id
        )


def test_a_reactivation_approval_is_spent_by_the_next_suspension_or_a_newer_approval(
    client: TestClient, actors: Actors
) -> None:
    """A failed reactivation run retried later must not reopen a tenant nobody approved."""
    tid = _suspended_tenant(client, actors)
    first = flows.request_reactivation(client, tid, actors.am).json()["id"]
    flows.ok(flows.decide_reactivation(client, tid, first, actors.gov))
    assert flows.reactivated(_db(client), tid) == "active"
    [old_run] = _end_runs(client, tid, REACTIVATION)
    flows.ok(flows.suspend(client, tid, actors.ops))  # suspended again: a new incident
    _end_runs(client, tid)  # the suspension's own run

    with pytest.raises(Conflict) as spent:
        _complete(client, tid, first, old_run)
    assert "was suspended again after reactivation request" in spent.value.detail
    assert _state(client, tid, actors.am) == "suspended"

    # A newer approval supersedes an older one; a pending request is cancelled on reactivation.
    second = flows.request_reactivation(client, tid, actors.am).json()["id"]
    flows.ok(flows.decide_reactivation(client, tid, second, actors.gov))
    [second_run] = _end_runs(client, tid, REACTIVATION)
    third = flows.request_reactivation(client, tid, actors.am).json()["id"]
    flows.ok(flows.decide_reactivation(client, tid, third, actors.gov))
    with pytest.raises(Conflict) as superseded:
        _complete(client, tid, second, second_run)
    assert "a newer reactivation of" in superseded.value.detail
    _complete(client, tid, third, second_run)
    assert _state(client, tid, actors.am) == "active"


def test_completing_a_reactivation_cancels_a_request_still_pending(
    client: TestClient, actors: Actors
) -> None:
    tid = _suspended_tenant(client, actors)
    first = flows.request_reactivation(client, tid, actors.am).json()["id"]
    flows.ok(flows.decide_reactivation(client, tid, first, actors.gov))
    [run] = _end_runs(client, tid, REACTIVATION)  # the run fails; another reactivation is asked for
    pending = flows.request_reactivation(client, tid, actors.am).json()["id"]
    _complete(client, tid, first, run)  # the first approval's run, retried, gets through
    statuses = {
        r["id"]: r["status"]
        for r in client.get(f"/api/v1/tenants/{tid}/approvals", headers=actors.am).json()
    }
    assert (statuses[first], statuses[pending]) == ("approved", "cancelled")


def test_no_second_reactivation_is_approved_while_one_runs(
    client: TestClient, actors: Actors
) -> None:
    tid = _suspended_tenant(client, actors)
    first = flows.request_reactivation(client, tid, actors.am).json()["id"]
    flows.ok(flows.decide_reactivation(client, tid, first, actors.gov))
    with _db(client).write() as session:  # filed while the first run had failed, then retried
        second = approvals.open_request(
            session, tenant_id=tid, kind=approvals.REACTIVATION, requested_by="amy", reason="x"
        ).id
    busy = flows.problem(flows.decide_reactivation(client, tid, second, actors.gov), 409)
    assert "is being reactivated (run " in busy["detail"]


def _fail_run(client: TestClient, tid: str, runbook_id: str) -> str:
    """Fail the tenant's open run of ``runbook_id`` at its first step, for good, as a
    driver that is down would; its id."""
    with _db(client).write() as session:
        [run] = engine.open_runs(session, tenant_id=tid, runbook_id=runbook_id)
        [claim] = engine.claim(session, worker="test", runs=[run.id])
        engine.fail(session, claim=claim, error="driver down", retriable=False)
    return run.id


def _retry(client: TestClient, run_id: str, who: dict[str, str]) -> Any:
    return client.post(f"/api/v1/runs/{run_id}/retry", headers=who)


def _closed(run: dict[str, Any], reason: str, error: str) -> None:
    """``run`` (as the API reads it) failed with ``error`` and was closed for ``reason``."""
    assert (run["status"], run["error"], run["closed_reason"]) == ("failed", error, reason)
    assert run["closed_at"] is not None


def test_a_reactivation_closes_a_failed_suspension_and_offboarding_a_failed_reactivation(
    client: TestClient, actors: Actors
) -> None:
    """A failed lifecycle run retried after the tenant moved on would undo the move:
    an old suspension would isolate the reactivated tenant, an old reactivation would
    restore an offboarded tenant's access. The move closes them; they stay failed."""
    tid = _suspended_tenant(client, actors)
    suspension = _fail_run(client, tid, "tenant-suspension")
    request = flows.request_reactivation(client, tid, actors.am).json()["id"]
    approved = flows.ok(flows.decide_reactivation(client, tid, request, actors.gov))
    run = client.get(f"/api/v1/runs/{suspension}", headers=actors.ops).json()
    _closed(run, "superseded by an approved reactivation", "step incident failed: driver down")
    refused = flows.problem(_retry(client, suspension, actors.ops), 409)
    assert refused["detail"] == (
        f"run {suspension} was closed (superseded by an approved reactivation); it is not retried"
    )
    assert approved["state"] == "suspended"

    reactivation = _fail_run(client, tid, REACTIVATION)
    flows.ok(flows.offboard(client, tid, actors.am, reason="contract ended"))
    run = client.get(f"/api/v1/runs/{reactivation}", headers=actors.ops).json()
    _closed(run, "tenant offboarded", "step restore-network failed: driver down")
    flows.problem(_retry(client, reactivation, actors.ops), 409)
    [entry] = client.get(
        "/api/v1/audit",
        params={"tenant_id": tid, "action": "tenant.offboarding"},
        headers=actors.auditor,
    ).json()["items"]
    assert entry["detail"]["closed_runs"] == [reactivation]


def test_approving_a_reactivation_stops_a_suspension_still_running(
    client: TestClient, actors: Actors
) -> None:
    """Its run would go on isolating what the reactivation restores."""
    tid = _suspended_tenant(client, actors)
    with _db(client).read() as session:
        [suspension] = engine.open_runs(
            session, tenant_id=tid, runbook_id="tenant-suspension", lock=False
        )
    request = flows.request_reactivation(client, tid, actors.am).json()["id"]
    flows.ok(flows.decide_reactivation(client, tid, request, actors.gov))
    run = client.get(f"/api/v1/runs/{suspension.id}", headers=actors.ops).json()
    assert (run["status"], run["error"]) == ("cancelled", "superseded by an approved reactivation")
    [entry] = client.get(
        "/api/v1/audit",
        params={"tenant_id": tid, "action": "tenant.reactivation.approved"},
        headers=actors.auditor,
    ).json()["items"]
    assert entry["detail"]["cancelled_runs"] == [suspension.id]


def test_no_reactivation_is_approved_while_a_suspension_step_executes(
    client: TestClient, actors: Actors
) -> None:
    """Cancelling the suspension cannot stop a step a worker is running: it could
    isolate after the reactivation restored. Once it has ended, the approval goes on."""
    tenant = flows.tenant_in(client, actors, TenantState.SUSPENDED)
    tid = tenant["id"]
    with _db(client).write() as session:
        [suspension] = engine.open_runs(session, tenant_id=tid, runbook_id="tenant-suspension")
        [held] = engine.claim(session, worker="w1", runs=[suspension.id])
    request = flows.request_reactivation(client, tid, actors.am).json()["id"]
    busy = flows.problem(flows.decide_reactivation(client, tid, request, actors.gov), 409)
    assert busy["detail"].startswith(
        f"tenant {tenant['name']} is still being suspended: "
        f"step {held.step_name} of run {suspension.id} is executing"
    )
    with _db(client).write() as session:  # the step ends (a try failed; a retry is due later)
        engine.fail(session, claim=held, error="timeout", retriable=True)
    flows.ok(flows.decide_reactivation(client, tid, request, actors.gov))
    run = client.get(f"/api/v1/runs/{suspension.id}", headers=actors.ops).json()
    assert run["status"] == "cancelled"


def test_a_suspension_step_whose_worker_is_gone_does_not_hold_the_reactivation(
    client: TestClient, actors: Actors, clock: Clock
) -> None:
    tid = _suspended_tenant(client, actors)
    with _db(client).write() as session:
        [suspension] = engine.open_runs(session, tenant_id=tid, runbook_id="tenant-suspension")
        [held] = engine.claim(session, worker="w1", runs=[suspension.id])
    assert held.hold_until is not None
    clock.now = held.hold_until + timedelta(seconds=1)  # the lease lapsed: nobody runs it
    request = flows.request_reactivation(client, tid, actors.am).json()["id"]
    flows.ok(flows.decide_reactivation(client, tid, request, actors.gov))
    run = client.get(f"/api/v1/runs/{suspension.id}", headers=actors.ops).json()
    assert run["status"] == "cancelled"


def test_offboarding_leaves_a_rejected_request_and_closes_other_failed_runs(
    client: TestClient, actors: Actors
) -> None:
    """A run a person ended by rejecting its gate was a decision: nothing to close."""
    tid = flows.tenant_in(client, actors, TenantState.ACTIVE)["id"]
    probe = spec.parse(
        'id: probe\nversion: "1.0"\ntitle: Probe\nkind: runbook\nsteps:\n'
        "  - {name: approval, gate: {roles: [governance]}}\n"
        "  - {name: act, action: noop}\n"
    )
    gov = Principal("gus", frozenset({Role.GOVERNANCE}))
    with _db(client).write() as session:
        rejected, failed = (
            engine.start_run(session, loaded=probe, actor=RUNBOOK_ENGINE, tenant_id=tid).id
            for _ in range(2)
        )
        for run_id, decision in ((rejected, "reject"), (failed, "approve")):
            engine.signal(
                session, run_id=run_id, step_name="approval", decision=decision, principal=gov
            )
    _fail_run(client, tid, "probe")
    flows.ok(flows.offboard(client, tid, actors.am, reason="contract ended"))
    by_id = {
        run_id: client.get(f"/api/v1/runs/{run_id}", headers=actors.ops).json()
        for run_id in (rejected, failed)
    }
    assert (by_id[rejected]["status"], by_id[rejected]["closed_at"]) == ("failed", None)
    _closed(by_id[failed], "tenant offboarded", "step act failed: driver down")


def test_a_failed_run_is_closed_by_cancelling_it_and_stays_failed(
    client: TestClient, actors: Actors
) -> None:
    tid = _suspended_tenant(client, actors)
    run_id = _fail_run(client, tid, "tenant-suspension")
    closed = client.post(
        f"/api/v1/runs/{run_id}/cancel", json={"reason": "done by hand"}, headers=actors.ops
    )
    assert closed.status_code == 200, closed.text
    _closed(closed.json(), "done by hand", "step incident failed: driver down")
    again = client.post(
        f"/api/v1/runs/{run_id}/cancel", json={"reason": "again"}, headers=actors.ops
    )
    assert flows.problem(again, 409)["detail"] == f"run {run_id} is already closed (done by hand)"
    [entry] = client.get(
        "/api/v1/audit", params={"action": "run.closed"}, headers=actors.auditor
    ).json()["items"]
    assert entry["detail"] == {"run_id": run_id, "reason": "done by hand"}
