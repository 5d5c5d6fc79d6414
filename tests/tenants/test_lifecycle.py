"""The lifecycle table, every state × event pair, pure and through the API.

``EXPECTED`` is the documented table, written out by hand rather than read from
``lifecycle.TRANSITIONS``: a change to the product's lifecycle has to change
this page too, on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
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
from tests.conftest import Actors, Clock
from tests.flows import (
    PATH,
    decide,
    decide_reactivation,
    ok,
    problem,
    reactivated,
    request_reactivation,
    send_event,
    tenant_in,
)

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


# Every API action that maps to a lifecycle event. ``attempt`` makes the first
# call (the one refused in a wrong state); ``complete`` finishes the action
# when it takes more than one call, and returns the final response.
@dataclass(frozen=True)
class Action:
    event: TenantEvent
    attempt: Callable[[TestClient, Actors, str], Any]
    complete: Callable[[TestClient, Actors, str, Any], Any] = lambda c, a, t, first: first


def _reactivate(client: TestClient, actors: Actors, tid: str, request_id: str) -> Any:
    """Approve, then the reactivation run's last step: only that makes the tenant active."""
    approved = ok(decide_reactivation(client, tid, request_id, actors.gov))
    assert approved["state"] == "suspended"
    reactivated(client.app.state.db, tid)  # type: ignore[attr-defined]
    return client.get(f"/api/v1/tenants/{tid}", headers=actors.am)


ACTIONS = [
    Action(
        E.APPROVE,
        lambda c, a, t: decide(c, t, "governance", a.gov, "approve"),
        lambda c, a, t, first: decide(c, t, "security", a.sec, "approve"),
    ),
    Action(E.REJECT, lambda c, a, t: decide(c, t, "security", a.sec, "reject")),
    Action(E.SUSPEND, PATH[S.SUSPENDED][1]),
    Action(
        E.REACTIVATE,
        lambda c, a, t: request_reactivation(c, t, a.am),
        lambda c, a, t, first: _reactivate(c, a, t, ok(first, 201)["id"]),
    ),
    Action(E.OFFBOARD, PATH[S.OFFBOARDING][1]),
    *(
        Action(event, lambda c, a, t, name=event.value, who=who: send_event(c, t, name, who(a)))
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
    body = problem(response, 409)
    assert body["type"].endswith("/invalid-transition")
    assert body["current_state"] == state.value
    assert f"that is {state.value}" in body["detail"]


@pytest.mark.parametrize("state", list(TenantState), ids=str)
def test_every_api_action_in_every_state(
    client: TestClient, actors: Actors, state: TenantState
) -> None:
    allowed = [a for a in ACTIONS if (state, a.event) in EXPECTED]
    refused = [a for a in ACTIONS if (state, a.event) not in EXPECTED]

    # One tenant takes every refusal: a refusal must leave it exactly as it was.
    tid = tenant_in(client, actors, state)["id"]
    before = ok(client.get(f"/api/v1/tenants/{tid}", headers=actors.am))
    trail = {"tenant_id": tid}
    entries = len(ok(client.get("/api/v1/audit", params=trail, headers=actors.auditor))["items"])
    for action in refused:
        _assert_refused(action.attempt(client, actors, tid), state)
    # Deciding a reactivation request is refused by state too, not as a 404; only
    # a suspended tenant gets as far as looking for the request.
    decided = decide_reactivation(client, tid, "no-such-request", actors.gov)
    if state is S.SUSPENDED:
        assert decided.status_code == 404, decided.text
    else:
        _assert_refused(decided, state)
    assert ok(client.get(f"/api/v1/tenants/{tid}", headers=actors.am)) == before
    audit = ok(client.get("/api/v1/audit", params=trail, headers=actors.auditor))
    assert len(audit["items"]) == entries

    # Each allowed action on its own fresh tenant yields the documented state.
    for action in allowed:
        tid = tenant_in(client, actors, state)["id"]
        first = action.attempt(client, actors, tid)
        final = ok(action.complete(client, actors, tid, first))
        target, _guard = EXPECTED[(state, action.event)]
        assert final["state"] == target.value, action.event


def test_the_milestones_are_set_once_by_the_moves_that_reach_them(
    client: TestClient, actors: Actors, clock: Clock
) -> None:
    """``approved_at`` and ``activated_at`` (the KPIs' clock) keep their first value."""
    tid = tenant_in(client, actors, S.REQUESTED)["id"]

    def milestones() -> tuple[str | None, str | None]:
        tenant = ok(client.get(f"/api/v1/tenants/{tid}", headers=actors.am))
        return tenant["approved_at"], tenant["activated_at"]

    assert milestones() == (None, None)
    clock.advance(minutes=10)
    approved = clock.now
    ok(PATH[S.APPROVED][1](client, actors, tid))
    for state in (S.PROVISIONING, S.VERIFYING, S.ACTIVE):
        clock.advance(minutes=5)
        ok(PATH[state][1](client, actors, tid))
    activated = clock.now
    first = milestones()
    assert [datetime.fromisoformat(at or "-") for at in first] == [approved, activated]

    # Suspended and reactivated: active again, but not activated again.
    clock.advance(hours=1)
    ok(PATH[S.SUSPENDED][1](client, actors, tid))
    request = ok(request_reactivation(client, tid, actors.am), 201)
    assert ok(decide_reactivation(client, tid, request["id"], actors.gov))["state"] == "suspended"
    assert reactivated(client.app.state.db, tid) == "active"  # type: ignore[attr-defined]
    assert milestones() == first
