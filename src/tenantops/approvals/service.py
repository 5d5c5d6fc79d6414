"""Open, decide and read approval requests; the rules are in ``rules``."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tenantops.approvals import repository
from tenantops.approvals.models import ApprovalDecision, ApprovalRequest
from tenantops.approvals.rules import PriorDecision, check_decision, outcome
from tenantops.approvals.schemas import ApprovalRequestRead, DecisionRead
from tenantops.auth.principal import Principal
from tenantops.errors import Conflict, NotFound
from tenantops.kit.clock import utcnow
from tenantops.kit.ids import new_id

ONBOARDING = "onboarding"
REACTIVATION = "reactivation"
REQUIRED_ROLES = {ONBOARDING: ["governance", "security"], REACTIVATION: ["governance"]}


def open_request(
    session: Session, *, tenant_id: str, kind: str, requested_by: str, reason: str | None = None
) -> ApprovalRequest:
    """Open a pending request of ``kind``; at most one is pending per tenant and kind."""
    if repository.pending(session, tenant_id, kind) is not None:
        raise Conflict(f"a {kind} request is already pending for this tenant")
    request = ApprovalRequest(
        id=new_id(),
        tenant_id=tenant_id,
        kind=kind,
        status="pending",
        required_roles=REQUIRED_ROLES[kind],
        requested_by=requested_by,
        reason=reason,
        created_at=utcnow(),
    )
    session.add(request)
    return request


def pending_request(session: Session, *, tenant_id: str, kind: str) -> ApprovalRequest:
    request = repository.pending(session, tenant_id, kind)
    if request is None:
        raise NotFound(f"no pending {kind} request for this tenant")
    return request


def approved_request(
    session: Session, *, request_id: str, tenant_id: str, kind: str
) -> ApprovalRequest:
    """The approved request ``request_id`` of ``kind`` for the tenant; ``Conflict`` otherwise.

    What a runbook step started by an approval checks before it acts on it.
    """
    request = session.get(ApprovalRequest, request_id)
    if request is None or request.tenant_id != tenant_id or request.kind != kind:
        raise Conflict(f"no {kind} request {request_id!r} for this tenant")
    if request.status != "approved":
        raise Conflict(f"the {kind} request {request_id} is {request.status}, not approved")
    return request


def decide(
    session: Session,
    *,
    request: ApprovalRequest,
    principal: Principal,
    role: str,
    decision: str,
    comment: str | None,
    risk_ref: str | None,
) -> str:
    """Record ``principal``'s decision under the SoD rules; return the request's status."""
    if request.status != "pending":
        raise Conflict(f"this {request.kind} request is already {request.status}")
    prior = [
        PriorDecision(d.role, d.principal, d.decision)
        for d in repository.decisions(session, [request.id])
    ]
    check_decision(
        requested_by=request.requested_by,
        required_roles=request.required_roles,
        prior=prior,
        decider=principal.subject,
        decider_roles=principal.role_names(),
        role=role,
    )
    now = utcnow()
    session.add(
        ApprovalDecision(
            id=new_id(),
            request_id=request.id,
            role=role,
            decision=decision,
            principal=principal.subject,
            comment=comment,
            risk_ref=risk_ref,
            created_at=now,
        )
    )
    status = outcome(
        request.required_roles, [*prior, PriorDecision(role, principal.subject, decision)]
    )
    if status != "pending":
        request.status = status
        request.decided_at = now
    return status


def cancel_pending(session: Session, *, tenant_id: str, kind: str | None = None) -> list[str]:
    """Close the tenant's pending requests (of ``kind``, or every kind: a tenant leaving)."""
    closed = []
    for request in repository.for_tenant(session, tenant_id):
        if request.status == "pending" and kind in (None, request.kind):
            request.status = "cancelled"
            request.decided_at = utcnow()
            closed.append(request.id)
    return closed


def list_for_tenant(session: Session, *, tenant_id: str) -> list[ApprovalRequestRead]:
    requests = repository.for_tenant(session, tenant_id)
    by_request: dict[str, list[DecisionRead]] = {r.id: [] for r in requests}
    for d in repository.decisions(session, [r.id for r in requests]):
        by_request[d.request_id].append(DecisionRead.model_validate(d))
    return [
        ApprovalRequestRead(
            id=r.id,
            tenant_id=r.tenant_id,
            kind=r.kind,
            status=r.status,
            required_roles=r.required_roles,
            requested_by=r.requested_by,
            reason=r.reason,
            created_at=r.created_at,
            decided_at=r.decided_at,
            decisions=by_request[r.id],
        )
        for r in requests
    ]
