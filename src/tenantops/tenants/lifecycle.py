"""The tenant lifecycle: a pure transition table with guards, and no I/O.

``transition(state, event, facts)`` returns the next state or raises
``InvalidTransition`` (the event is not allowed in this state) or
``GuardFailed`` (allowed here, but a precondition is not met). Runbooks and
approved decisions drive it; nothing sets a tenant's state directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from tenantops.errors import InvalidTransition


class TenantState(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    PROVISIONING = "provisioning"
    PROVISIONING_FAILED = "provisioning_failed"
    VERIFYING = "verifying"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    OFFBOARDING = "offboarding"
    ARCHIVED = "archived"


class TenantEvent(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    START_PROVISIONING = "start_provisioning"
    PROVISIONING_FAILED = "provisioning_failed"
    PROVISIONED = "provisioned"
    VERIFIED = "verified"
    VERIFICATION_FAILED = "verification_failed"
    SUSPEND = "suspend"
    REACTIVATE = "reactivate"
    OFFBOARD = "offboard"
    ARCHIVE = "archive"


@dataclass(frozen=True)
class Facts:
    """What the guards may look at, gathered by the service before a transition."""

    approvals_complete: bool = False
    reactivation_approved: bool = False


class GuardFailed(InvalidTransition):
    """The event is allowed in this state, but its precondition does not hold."""

    slug = "guard-failed"
    title = "Precondition of the transition not met"


Guard = Callable[[Facts], str | None]


def _approvals_complete(facts: Facts) -> str | None:
    if facts.approvals_complete:
        return None
    return "both a governance and a security approval are required"


def _reactivation_approved(facts: Facts) -> str | None:
    if facts.reactivation_approved:
        return None
    return "reactivation needs a governance approval of a reactivation request"


S, E = TenantState, TenantEvent

# (state, event) -> (next state, guard or None). Anything absent is refused.
TRANSITIONS: dict[tuple[TenantState, TenantEvent], tuple[TenantState, Guard | None]] = {
    (S.REQUESTED, E.APPROVE): (S.APPROVED, _approvals_complete),
    (S.REQUESTED, E.REJECT): (S.REJECTED, None),
    (S.APPROVED, E.START_PROVISIONING): (S.PROVISIONING, None),
    (S.PROVISIONING, E.PROVISIONED): (S.VERIFYING, None),
    (S.PROVISIONING, E.PROVISIONING_FAILED): (S.PROVISIONING_FAILED, None),
    (S.PROVISIONING_FAILED, E.START_PROVISIONING): (S.PROVISIONING, None),
    (S.VERIFYING, E.VERIFIED): (S.ACTIVE, None),
    (S.VERIFYING, E.VERIFICATION_FAILED): (S.PROVISIONING_FAILED, None),
    (S.ACTIVE, E.SUSPEND): (S.SUSPENDED, None),
    (S.SUSPENDED, E.REACTIVATE): (S.ACTIVE, _reactivation_approved),
    (S.APPROVED, E.OFFBOARD): (S.OFFBOARDING, None),
    (S.PROVISIONING_FAILED, E.OFFBOARD): (S.OFFBOARDING, None),
    (S.ACTIVE, E.OFFBOARD): (S.OFFBOARDING, None),
    (S.SUSPENDED, E.OFFBOARD): (S.OFFBOARDING, None),
    (S.OFFBOARDING, E.ARCHIVE): (S.ARCHIVED, None),
}

TERMINAL = frozenset({S.REJECTED, S.ARCHIVED})


def allowed_events(state: TenantState) -> list[TenantEvent]:
    """Events the table accepts in ``state`` (guards not evaluated)."""
    return [event for (s, event) in TRANSITIONS if s is state]


def transition(state: TenantState, event: TenantEvent, facts: Facts | None = None) -> TenantState:
    """The state after ``event``; raises if the table or a guard refuses it."""
    entry = TRANSITIONS.get((state, event))
    if entry is None:
        allowed = ", ".join(e.value for e in allowed_events(state)) or "none"
        raise InvalidTransition(
            f"cannot {event.value} a tenant that is {state.value} (allowed here: {allowed})",
            current_state=state.value,
            event=event.value,
        )
    target, guard = entry
    if guard is not None:
        reason = guard(facts or Facts())
        if reason is not None:
            raise GuardFailed(
                f"cannot {event.value} a tenant that is {state.value}: {reason}",
                current_state=state.value,
                event=event.value,
            )
    return target


def ensure_possible(state: TenantState, event: TenantEvent) -> None:
    """Raise ``InvalidTransition`` unless the table has ``(state, event)``; guards aside."""
    if (state, event) not in TRANSITIONS:
        transition(state, event)
