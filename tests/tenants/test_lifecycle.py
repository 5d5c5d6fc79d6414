"""The lifecycle table, every state × event pair, pure and through the API.

``EXPECTED`` is the documented table, written out by hand rather than read from
``lifecycle.TRANSITIONS``: a change to the product's lifecycle has to change
this page too, on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantops.errors import InvalidTransition
from tenantops.tenants.lifecycle import (
    TERMINAL,
    Facts,
    GuardFailed,
    TenantEvent,
    TenantState,
    allowed_events,
    transition,
)
from tests.conftest import TokenFactory
from tests.factories import tenant_body

S, E = TenantState, TenantEvent

APPROVALS = "approvals_complete"
REACTIVATION = "reactivation_approved"

# The tenant lifecycle: (state, event) -> (next state, fact the guard needs).
# Every pair not listed here is refused in that state.
#
#   requested ──approve*──> approved ──start_provisioning──> provisioning
#       └──reject──> rejected (terminal)
#   provisioning ──provisioned──> verifying ──verified──> active
#   provisioning ──provisioning_failed──> provisioning_failed
#   verifying ──verification_failed──> provisioning_failed ──start_provisioning──> provisioning
#   active ──suspend──> suspended ──reactivate**──> active
#   approved | provisioning_failed | active | suspended ──offboard──> offboarding
#   offboarding ──archive──> archived (terminal)
#
#   * only when governance and security both approved
#   ** only after governance approved a reactivation request
EXPECTED: dict[tuple[TenantState, TenantEvent], tuple[TenantState, str | None]] = {
    (S.REQUESTED, E.APPROVE): (S.APPROVED, APPROVALS),
    (S.REQUESTED, E.REJECT): (S.REJECTED, None),
    (S.APPROVED, E.START_PROVISIONING): (S.PROVISIONING, None),
    (S.APPROVED, E.OFFBOARD): (S.OFFBOARDING, None),
    (S.PROVISIONING, E.PROVISIONED): (S.VERIFYING, None),
    (S.PROVISIONING, E.PROVISIONING_FAILED): (S.PROVISIONING_FAILED, None),
    (S.PROVISIONING_FAILED, E.START_PROVISIONING): (S.PROVISIONING, None),
    (S.PROVISIONING_FAILED, E.OFFBOARD): (S.OFFBOARDING, None),
    (S.VERIFYING, E.VERIFIED): (S.ACTIVE, None),
    (S.VERIFYING, E.VERIFICATION_FAILED): (S.PROVISIONING_FAILED, None),
    (S.ACTIVE, E.SUSPEND): (S.SUSPENDED, None),
    (S.ACTIVE, E.OFFBOARD): (S.OFFBOARDING, None),
    (S.SUSPENDED, E.REACTIVATE): (S.ACTIVE, REACTIVATION),
    (S.SUSPENDED, E.OFFBOARD): (S.OFFBOARDING, None),
    (S.OFFBOARDING, E.ARCHIVE): (S.ARCHIVED, None),
}

ALL_PAIRS = [(state, event) for state in TenantState for event in TenantEvent]
NO_FACTS = Facts()
ALL_FACTS = Facts(approvals_complete=True, reactivation_approved=True)


def test_table_names_every_state_and_nothing_else() -> None:
    assert {s.value for s in TenantState} == {
        "requested",
        "approved",
        "rejected",
        "provisioning",
        "provisioning_failed",
        "verifying",
        "active",
        "suspended",
        "offboarding",
        "archived",
    }
    reachable = {S.REQUESTED} | {target for target, _ in EXPECTED.values()}
    assert reachable == set(TenantState)


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda v: str(v))
def test_every_state_event_pair(state: TenantState, event: TenantEvent) -> None:
    expected = EXPECTED.get((state, event))
    if expected is None:
        # Refused whatever the facts; the error names the state and the event.
        for facts in (NO_FACTS, ALL_FACTS):
            with pytest.raises(InvalidTransition) as refused:
                transition(state, event, facts)
            assert not isinstance(refused.value, GuardFailed)
            assert refused.value.status == 409
            assert refused.value.extra == {"current_state": state.value, "event": event.value}
            assert f"that is {state.value}" in refused.value.detail
        return

    target, needs = expected
    assert transition(state, event, ALL_FACTS) is target
    if needs is None:
        assert transition(state, event, NO_FACTS) is target
        assert transition(state, event) is target
        return
    # A guarded pair: refused without its fact (and with only the other fact).
    other = REACTIVATION if needs == APPROVALS else APPROVALS
    for facts in (NO_FACTS, Facts(**{other: True}), None):
        with pytest.raises(GuardFailed) as refused:
            transition(state, event, facts)
        assert refused.value.status == 409
        assert refused.value.extra["current_state"] == state.value
        assert state.value in refused.value.detail
    assert transition(state, event, Facts(**{needs: True})) is target


@pytest.mark.parametrize("state", list(TenantState), ids=str)
def test_allowed_events_match_the_table(state: TenantState) -> None:
    expected = {event for (s, event) in EXPECTED if s is state}
    assert set(allowed_events(state)) == expected
    assert (state in TERMINAL) == (not expected)


def test_refusal_lists_what_is_allowed_instead() -> None:
    with pytest.raises(InvalidTransition) as refused:
        transition(S.ACTIVE, E.APPROVE)
    assert refused.value.detail == (
        "cannot approve a tenant that is active (allowed here: suspend, offboard)"
    )
    with pytest.raises(InvalidTransition) as refused:
        transition(S.ARCHIVED, E.OFFBOARD)
    assert "(allowed here: none)" in refused.value.detail


# --- the same table through the API ----------------------------------------


@dataclass
class Actors:
    am: dict[str, str]
    gov: dict[str, str]
    sec: dict[str, str]
    ops: dict[str, str]
    qa: dict[str, str]
    auditor: dict[str, str]


@pytest.fixture
def actors(auth: TokenFactory) -> Actors:
    return Actors(
        am=auth("amy", "account_manager"),
        gov=auth("gus", "governance"),
        sec=auth("sue", "security"),
        ops=auth("oli", "ops_engineer"),
        qa=auth("quinn", "qa"),
        auditor=auth("ada", "auditor"),
    )


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def _step(client: TestClient, who: dict[str, str], tid: str, event: str) -> Any:
    return client.post(
        f"/api/v1/tenants/{tid}/lifecycle-events", json={"event": event}, headers=who
    )


def _decide(client: TestClient, who: dict[str, str], tid: str, role: str, decision: str) -> Any:
    return client.post(
        f"/api/v1/tenants/{tid}/approvals", json={"role": role, "decision": decision}, headers=who
    )


def _request_reactivation(client: TestClient, a: Actors, tid: str) -> Any:
    return client.post(
        f"/api/v1/tenants/{tid}/reactivation-requests", json={"reason": "paid"}, headers=a.am
    )


def _decide_reactivation(client: TestClient, a: Actors, tid: str, request_id: str) -> Any:
    return client.post(
        f"/api/v1/tenants/{tid}/reactivation-requests/{request_id}/approvals",
        json={"decision": "approve"},
        headers=a.gov,
    )


# How to bring a fresh tenant from one state to the next, by API calls only.
Step = Callable[[TestClient, Actors, str], Any]
PATH: dict[TenantState, tuple[TenantState, Step]] = {
    S.APPROVED: (
        S.REQUESTED,
        lambda c, a, t: (
            _decide(c, a.gov, t, "governance", "approve"),
            _decide(c, a.sec, t, "security", "approve"),
        )[-1],
    ),
    S.REJECTED: (S.REQUESTED, lambda c, a, t: _decide(c, a.gov, t, "governance", "reject")),
    S.PROVISIONING: (S.APPROVED, lambda c, a, t: _step(c, a.ops, t, "start_provisioning")),
    S.PROVISIONING_FAILED: (
        S.PROVISIONING,
        lambda c, a, t: _step(c, a.ops, t, "provisioning_failed"),
    ),
    S.VERIFYING: (S.PROVISIONING, lambda c, a, t: _step(c, a.ops, t, "provisioned")),
    S.ACTIVE: (S.VERIFYING, lambda c, a, t: _step(c, a.qa, t, "verified")),
    S.SUSPENDED: (
        S.ACTIVE,
        lambda c, a, t: c.post(
            f"/api/v1/tenants/{t}/suspend", json={"reason": "unpaid"}, headers=a.ops
        ),
    ),
    S.OFFBOARDING: (
        S.ACTIVE,
        lambda c, a, t: c.post(
            f"/api/v1/tenants/{t}/offboard", json={"reason": "end"}, headers=a.am
        ),
    ),
    S.ARCHIVED: (S.OFFBOARDING, lambda c, a, t: _step(c, a.ops, t, "archive")),
}


def _tenant_in(client: TestClient, a: Actors, state: TenantState) -> str:
    chain = [state]
    while chain[-1] is not S.REQUESTED:
        chain.append(PATH[chain[-1]][0])
    tid: str = _ok(client.post("/api/v1/tenants", json=tenant_body(), headers=a.am), 201)["id"]
    for target in reversed(chain[:-1]):
        assert _ok(PATH[target][1](client, a, tid))["state"] == target.value
    return tid


# Every API action that maps to a lifecycle event. ``attempt`` makes the first
# call (the one refused in a wrong state); ``complete`` finishes the action
# when it takes more than one call, and returns the final response.
@dataclass(frozen=True)
class Action:
    event: TenantEvent
    attempt: Callable[[TestClient, Actors, str], Any]
    complete: Callable[[TestClient, Actors, str, Any], Any] = lambda c, a, t, first: first


ACTIONS = [
    Action(
        E.APPROVE,
        lambda c, a, t: _decide(c, a.gov, t, "governance", "approve"),
        lambda c, a, t, first: _decide(c, a.sec, t, "security", "approve"),
    ),
    Action(E.REJECT, lambda c, a, t: _decide(c, a.sec, t, "security", "reject")),
    Action(E.SUSPEND, PATH[S.SUSPENDED][1]),
    Action(
        E.REACTIVATE,
        lambda c, a, t: _request_reactivation(c, a, t),
        lambda c, a, t, first: _decide_reactivation(c, a, t, _ok(first, 201)["id"]),
    ),
    Action(E.OFFBOARD, PATH[S.OFFBOARDING][1]),
    *(
        Action(event, lambda c, a, t, name=event.value, who=who: _step(c, who(a), t, name))
        for event, who in [
            (E.START_PROVISIONING, lambda a: a.ops),
            (E.PROVISIONED, lambda a: a.ops),
            (E.PROVISIONING_FAILED, lambda a: a.ops),
            (E.VERIFIED, lambda a: a.qa),
            (E.VERIFICATION_FAILED, lambda a: a.qa),
            (E.ARCHIVE, lambda a: a.ops),
        ]
    ),
]


def test_every_lifecycle_event_has_an_api_action() -> None:
    assert sorted(a.event for a in ACTIONS) == sorted(TenantEvent)


def _assert_refused(response: Any, state: TenantState) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 409
    assert problem["type"].endswith("/invalid-transition")
    assert problem["current_state"] == state.value
    assert f"that is {state.value}" in problem["detail"]


@pytest.mark.parametrize("state", list(TenantState), ids=str)
def test_every_api_action_in_every_state(
    client: TestClient, actors: Actors, state: TenantState
) -> None:
    allowed = [a for a in ACTIONS if (state, a.event) in EXPECTED]
    refused = [a for a in ACTIONS if (state, a.event) not in EXPECTED]

    # One tenant takes every refusal: a refusal must leave it exactly as it was.
    tid = _tenant_in(client, actors, state)
    before = _ok(client.get(f"/api/v1/tenants/{tid}", headers=actors.am))
    trail = {"tenant_id": tid}
    entries = len(_ok(client.get("/api/v1/audit", params=trail, headers=actors.auditor))["items"])
    for action in refused:
        _assert_refused(action.attempt(client, actors, tid), state)
    # Deciding a reactivation request is refused by state too, not as a 404; only
    # a suspended tenant gets as far as looking for the request.
    decided = _decide_reactivation(client, actors, tid, "no-such-request")
    if state is S.SUSPENDED:
        assert decided.status_code == 404, decided.text
    else:
        _assert_refused(decided, state)
    assert _ok(client.get(f"/api/v1/tenants/{tid}", headers=actors.am)) == before
    audit = _ok(client.get("/api/v1/audit", params=trail, headers=actors.auditor))
    assert len(audit["items"]) == entries

    # Each allowed action on its own fresh tenant yields the documented state.
    for action in allowed:
        tid = _tenant_in(client, actors, state)
        first = action.attempt(client, actors, tid)
        final = _ok(action.complete(client, actors, tid, first))
        target, _guard = EXPECTED[(state, action.event)]
        assert final["state"] == target.value, action.event
