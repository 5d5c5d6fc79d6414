"""Segregation-of-duties rules, pure so they can be tested exhaustively.

- Whoever asked for a change never decides on it.
- Each required role is decided once.
- Two roles on one request are decided by two different people, even when one
  person holds both roles.
- Only the holder of a role decides in that role.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tenantops.errors import (
    AlreadyDecided,
    AppError,
    Forbidden,
    SegregationOfDuties,
    Unprocessable,
)


@dataclass(frozen=True)
class PriorDecision:
    role: str
    principal: str
    decision: str


def refusal(
    *,
    requested_by: str,
    required_roles: Iterable[str],
    prior: Iterable[PriorDecision],
    decider: str,
    decider_roles: Iterable[str],
    role: str,
) -> AppError | None:
    """Why ``decider`` may not decide in ``role``, or ``None`` if they may; changes nothing.

    The one statement of the rules: ``check_decision`` raises what this returns,
    and the approvals inbox shows it in words before anyone presses a button.
    A ``SegregationOfDuties`` carries the broken rule's code in ``extra["rule"]``.
    """
    required = list(required_roles)
    if role not in required:
        return Unprocessable(
            f"this request needs decisions from {', '.join(required)}, not {role}",
            param="role",
        )
    if role not in set(decider_roles):
        return Forbidden(f"you do not hold the {role} role, so you cannot decide as {role}")
    if decider == requested_by:
        return SegregationOfDuties(
            f"you requested this change, so you cannot decide on it as {role}; "
            f"another {role} member must do so",
            rule="requester-not-approver",
        )
    for earlier in prior:
        if earlier.role == role:
            return AlreadyDecided(
                f"the {role} decision was already taken by {earlier.principal} "
                f"({earlier.decision})",
            )
        if earlier.principal == decider:
            return SegregationOfDuties(
                f"you already decided as {earlier.role}; the {role} decision must come "
                "from a different person",
                rule="distinct-approvers",
            )
    return None


def check_decision(
    *,
    requested_by: str,
    required_roles: Iterable[str],
    prior: Iterable[PriorDecision],
    decider: str,
    decider_roles: Iterable[str],
    role: str,
) -> None:
    """Raise the reason ``decider`` may not decide in ``role``; return if they may."""
    reason = refusal(
        requested_by=requested_by,
        required_roles=required_roles,
        prior=prior,
        decider=decider,
        decider_roles=decider_roles,
        role=role,
    )
    if reason is not None:
        raise reason


def outcome(required_roles: Iterable[str], decisions: Iterable[PriorDecision]) -> str:
    """``rejected`` if any decision rejects, ``approved`` when every role approved."""
    taken = list(decisions)
    if any(d.decision == "reject" for d in taken):
        return "rejected"
    approved = {d.role for d in taken if d.decision == "approve"}
    return "approved" if set(required_roles) <= approved else "pending"
