"""Tenant rules and transactions: request, decide, suspend, reactivate, offboard.

Every function here runs inside the caller's write transaction, locks the
tenant row it changes, moves the state only through ``lifecycle.transition``
and writes the audit entry before returning, so the change and its record
commit together or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenantops.approvals import service as approvals
from tenantops.approvals.schemas import ApprovalRequestRead
from tenantops.audit import service as audit
from tenantops.auth.principal import Principal, Role
from tenantops.errors import (
    Conflict,
    Forbidden,
    IdempotencyMismatch,
    InvalidTransition,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from tenantops.kit.canonical import canonical_json
from tenantops.kit.clock import as_utc, utcnow
from tenantops.kit.ids import new_id
from tenantops.provisioning.manifests import TIERS
from tenantops.runbooks import engine
from tenantops.tenants import announcements, lifecycle, repository, runs
from tenantops.tenants.lifecycle import Facts, TenantEvent, TenantState
from tenantops.tenants.models import IdempotencyRecord, Tenant
from tenantops.tenants.repository import TenantFilter as TenantFilter  # for other domains
from tenantops.tenants.schemas import (
    ApprovalCreate,
    LifecycleEventCreate,
    OffboardRequest,
    ReactivationDecisionCreate,
    ReactivationRequestCreate,
    SuspendRequest,
    TenantCreate,
)

AUDITED_FIELDS = (
    "name",
    "display_name",
    "business_owner",
    "compliance_classification",
    "region",
    "tier",
    "monthly_budget",
    "currency",
    "contacts",
    "ticket_ref",
    "state",
)

# Who may record the outcome of which manual or runbook step.
STEP_ROLES: dict[TenantEvent, frozenset[Role]] = {
    TenantEvent.START_PROVISIONING: frozenset({Role.OPS_ENGINEER, Role.ADMIN}),
    TenantEvent.PROVISIONED: frozenset({Role.OPS_ENGINEER, Role.ADMIN}),
    TenantEvent.PROVISIONING_FAILED: frozenset({Role.OPS_ENGINEER, Role.ADMIN}),
    TenantEvent.VERIFIED: frozenset({Role.QA, Role.ADMIN}),
    TenantEvent.VERIFICATION_FAILED: frozenset({Role.QA, Role.ADMIN}),
    TenantEvent.ARCHIVE: frozenset({Role.OPS_ENGINEER, Role.ADMIN}),
}


def snapshot(tenant: Tenant) -> dict[str, Any]:
    return {field: getattr(tenant, field) for field in AUDITED_FIELDS}


def _visible(principal: Principal, tenant: Tenant | None, ref: str) -> Tenant:
    # A tenant owner asking for someone else's tenant learns nothing, not even
    # that it exists: same 404 as a tenant that does not.
    if tenant is None or not principal.can_see(tenant.id, tenant.name):
        raise NotFound(f"no tenant {ref!r}")
    return tenant


def get_tenant(session: Session, *, principal: Principal, ref: str) -> Tenant:
    """A tenant the principal may see, by id or name."""
    return _visible(principal, repository.get(session, ref), ref)


def own_tenant_id(session: Session, principal: Principal) -> str | None:
    """The id of the one tenant a tenant-scoped principal may see; ``None`` if none exists."""
    if principal.tenant is None:
        return None
    try:
        return get_tenant(session, principal=principal, ref=principal.tenant).id
    except NotFound:
        return None


def list_approvals(
    session: Session, *, principal: Principal, ref: str
) -> list[ApprovalRequestRead]:
    """Approval requests of a tenant the principal may see, oldest first."""
    tenant = get_tenant(session, principal=principal, ref=ref)
    return approvals.list_for_tenant(session, tenant_id=tenant.id)


def names_of(session: Session, tenant_ids: Collection[str]) -> dict[str, str]:
    """Tenant names by id (one query), for other domains' listings; no scoping applied."""
    return repository.names_of(session, tenant_ids)


def list_tenants(
    session: Session,
    *,
    principal: Principal,
    filters: repository.TenantFilter,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[Tenant], str | None]:
    """A page of tenants the principal may see."""
    scoped = _scoped(principal, filters)
    if scoped is None:
        return [], None
    after = repository.decode_cursor(cursor) if cursor else None
    return repository.list_page(session, scoped, after_id=after, limit=limit)


def live(
    session: Session,
    *,
    principal: Principal,
    filters: repository.TenantFilter,
    activated_before: datetime,
) -> Sequence[Tenant]:
    """The tenants on the platform (active or suspended) that ``principal`` may see and
    ``filters`` match, first active before ``activated_before``, in id order."""
    scoped = _scoped(principal, filters)
    if scoped is None:
        return []
    return repository.in_states(
        session,
        scoped,
        states=(TenantState.ACTIVE, TenantState.SUSPENDED),
        activated_before=activated_before,
    )


def state_of(session: Session, tenant_id: str) -> str | None:
    """The lifecycle state of tenant ``tenant_id`` now; None when there is none."""
    tenant = repository.get(session, tenant_id)
    return tenant.state if tenant is not None else None


def count_tenants(
    session: Session,
    *,
    principal: Principal,
    filters: repository.TenantFilter,
    cursor: str | None = None,
) -> int:
    """How many tenants of ``list_tenants`` match; with ``cursor``, how many come before
    the page it starts (the list is newest first on time-ordered ids)."""
    scoped = _scoped(principal, filters)
    if scoped is None:
        return 0
    from_id = repository.decode_cursor(cursor) if cursor else None
    return repository.count(session, scoped, from_id=from_id)


def _scoped(
    principal: Principal, filters: repository.TenantFilter
) -> repository.TenantFilter | None:
    """``filters`` within what ``principal`` may see; None when that is nothing."""
    if not principal.tenant_scoped:
        return filters
    if principal.tenant is None:
        return None
    return repository.TenantFilter(**{**filters.__dict__, "only": principal.tenant})


def _lock(session: Session, *, principal: Principal, ref: str, if_match: int | None) -> Tenant:
    tenant = _visible(principal, repository.get(session, ref, for_update=True), ref)
    if if_match is not None and tenant.version != if_match:
        raise PreconditionFailed(
            f"tenant {tenant.name} is at version {tenant.version}, not {if_match}; "
            "read it again and retry",
            current_version=tenant.version,
        )
    return tenant


def _move(
    session: Session,
    tenant: Tenant,
    event: TenantEvent,
    *,
    principal: Principal,
    action: str,
    facts: Facts | None = None,
    detail: dict[str, Any] | None = None,
) -> Tenant:
    before = snapshot(tenant)
    tenant.state = lifecycle.transition(TenantState(tenant.state), event, facts).value
    tenant.updated_at = now = utcnow()
    # The first time a tenant is approved and becomes active: the KPIs' activation
    # and provisioning times (a reactivation is not an activation).
    if event is TenantEvent.APPROVE and tenant.approved_at is None:
        tenant.approved_at = now
    if event is TenantEvent.VERIFIED and tenant.activated_at is None:
        tenant.activated_at = now
    session.flush()
    audit.record(
        session,
        actor=principal,
        action=action,
        tenant_id=tenant.id,
        changes=audit.diff(before, snapshot(tenant)),
        detail=detail,
    )
    announcements.state_changed(
        session,
        tenant,
        before=before["state"],
        event=event.value,
        principal=principal,
        detail=detail,
    )
    return tenant


def _request_hash(data: TenantCreate) -> str:
    return hashlib.sha256(canonical_json(data.model_dump(mode="json")).encode()).hexdigest()


def check_tier(tier: str) -> None:
    """``Unprocessable`` unless the platform renders ``tier`` (its quota and limits)."""
    if tier not in TIERS:
        raise Unprocessable(f"unknown tier {tier!r} (known: {', '.join(TIERS)})", param="tier")


def check_region(region: str, regions: Collection[str]) -> None:
    """``Unprocessable`` unless ``region`` is one the platform serves (``TENANTOPS_REGIONS``).

    Data residency: a tenant placed in a region the platform does not run would
    be rendered and committed with a label no cluster answers to. With no list
    configured, every region name is accepted.
    """
    if regions and region not in regions:
        raise Unprocessable(
            f"region {region!r} is not one this platform serves (serves: {', '.join(regions)})",
            param="region",
        )


def create_tenant(
    session: Session,
    *,
    principal: Principal,
    data: TenantCreate,
    idempotency_key: str | None = None,
    regions: Collection[str] = (),
) -> tuple[Tenant, bool]:
    """Register a requested tenant and open its onboarding approval.

    Returns the tenant and whether this was a replay of an earlier request
    with the same ``Idempotency-Key``. The tier must be one the platform
    renders, the region one of ``regions`` when that is not empty.
    """
    request_hash = _request_hash(data)
    if idempotency_key is not None:
        seen = repository.get_idempotency(session, principal.subject, idempotency_key)
        if seen is not None:
            if seen.request_hash != request_hash:
                raise IdempotencyMismatch(
                    "this Idempotency-Key was already used for a different request body"
                )
            earlier = repository.get(session, seen.resource_id)
            if earlier is None:  # pragma: no cover - tenants are never deleted
                raise NotFound("the tenant created with this Idempotency-Key is gone")
            return earlier, True
    check_tier(data.tier)
    check_region(data.region, regions)
    if repository.get_by_name(session, data.name) is not None:
        raise Conflict(f"a tenant named {data.name!r} already exists", param="name")
    now = utcnow()
    tenant = Tenant(
        id=new_id(),
        **data.model_dump(exclude={"business_owner", "contacts"}),
        business_owner=str(data.business_owner).lower(),
        contacts=[str(c).lower() for c in data.contacts],
        state=TenantState.REQUESTED.value,
        requested_by=principal.subject,
        created_at=now,
        updated_at=now,
    )
    session.add(tenant)
    if idempotency_key is not None:
        session.add(
            IdempotencyRecord(
                principal=principal.subject,
                key=idempotency_key,
                request_hash=request_hash,
                resource_id=tenant.id,
                created_at=now,
            )
        )
    try:
        session.flush()
    except IntegrityError as exc:
        # Lost a race with a concurrent request for the same name or key.
        raise Conflict(
            f"a tenant named {data.name!r} or a request with this Idempotency-Key "
            "was created at the same moment; retry to see it",
        ) from exc
    request = approvals.open_request(
        session,
        tenant_id=tenant.id,
        kind=approvals.ONBOARDING,
        requested_by=principal.subject,
        reason=data.ticket_ref,
    )
    session.flush()
    audit.record(
        session,
        actor=principal,
        action="tenant.requested",
        tenant_id=tenant.id,
        changes=audit.diff({}, snapshot(tenant)),
        detail={
            "approval_request_id": request.id,
            "ticket_ref": data.ticket_ref,
            "run_id": (run_id := runs.start(session, runs.ONBOARDING_RUNBOOK, tenant, principal)),
        },
    )
    announcements.state_changed(
        session,
        tenant,
        before=None,
        event=None,
        principal=principal,
        detail={"ticket_ref": data.ticket_ref, "run_id": run_id},
    )
    return tenant, False


def decide_onboarding(
    session: Session,
    *,
    principal: Principal,
    ref: str,
    data: ApprovalCreate,
    if_match: int | None = None,
) -> Tenant:
    """Record a governance or security decision; approve on both, reject on one."""
    tenant = _lock(session, principal=principal, ref=ref, if_match=if_match)
    event = TenantEvent.APPROVE if data.decision == "approve" else TenantEvent.REJECT
    lifecycle.ensure_possible(TenantState(tenant.state), event)
    request = approvals.pending_request(session, tenant_id=tenant.id, kind=approvals.ONBOARDING)
    status = approvals.decide(
        session,
        request=request,
        principal=principal,
        role=data.role,
        decision=data.decision,
        comment=data.comment,
        risk_ref=data.risk_ref,
    )
    detail = {
        "approval_request_id": request.id,
        "role": data.role,
        "decision": data.decision,
        "comment": data.comment,
        "risk_ref": data.risk_ref,
    }
    if status != "pending":
        detail["run_id"] = runs.signal_onboarding(
            session, tenant, principal, data.decision, data.role
        )
    announcements.approval_recorded(
        session,
        tenant,
        principal=principal,
        request_id=request.id,
        kind=approvals.ONBOARDING,
        role=data.role,
        decision=data.decision,
        status=status,
        comment=data.comment,
        risk_ref=data.risk_ref,
    )
    if status == "approved":
        return _move(
            session,
            tenant,
            TenantEvent.APPROVE,
            principal=principal,
            action="tenant.approved",
            facts=Facts(approvals_complete=True),
            detail=detail,
        )
    if status == "rejected":
        return _move(
            session,
            tenant,
            TenantEvent.REJECT,
            principal=principal,
            action="tenant.rejected",
            detail=detail,
        )
    tenant.updated_at = utcnow()  # bumps the version: the tenant's approvals changed
    session.flush()
    audit.record(
        session,
        actor=principal,
        action="tenant.approval.recorded",
        tenant_id=tenant.id,
        changes={},
        detail=detail,
    )
    return tenant


def suspend_tenant(
    session: Session,
    *,
    principal: Principal,
    ref: str,
    data: SuspendRequest,
    if_match: int | None = None,
) -> Tenant:
    """Suspend an active tenant (incident, payment breach)."""
    tenant = _lock(session, principal=principal, ref=ref, if_match=if_match)
    lifecycle.ensure_possible(TenantState(tenant.state), TenantEvent.SUSPEND)
    inputs: dict[str, Any] = {"reason": data.reason}
    if data.incident_ref is not None:
        inputs["incident_ref"] = data.incident_ref
    closed = runs.close_failed(session, tenant, principal, reason="superseded by a suspension")
    run_id = runs.start(session, runs.SUSPENSION_RUNBOOK, tenant, principal, **inputs)
    return _move(
        session,
        tenant,
        TenantEvent.SUSPEND,
        principal=principal,
        action="tenant.suspended",
        detail={
            "reason": data.reason,
            "incident_ref": data.incident_ref,
            "run_id": run_id,
            **({"closed_runs": closed} if closed else {}),
        },
    )


def request_reactivation(
    session: Session,
    *,
    principal: Principal,
    ref: str,
    data: ReactivationRequestCreate,
) -> ApprovalRequestRead:
    """Ask governance to reactivate a suspended tenant (not while a reactivation runs)."""
    tenant = _lock(session, principal=principal, ref=ref, if_match=None)
    lifecycle.ensure_possible(TenantState(tenant.state), TenantEvent.REACTIVATE)
    _no_reactivation_running(session, tenant)
    request = approvals.open_request(
        session,
        tenant_id=tenant.id,
        kind=approvals.REACTIVATION,
        requested_by=principal.subject,
        reason=data.reason,
    )
    tenant.updated_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor=principal,
        action="tenant.reactivation.requested",
        tenant_id=tenant.id,
        changes={},
        detail={"approval_request_id": request.id, "reason": data.reason},
    )
    return next(
        r for r in approvals.list_for_tenant(session, tenant_id=tenant.id) if r.id == request.id
    )


def decide_reactivation(
    session: Session,
    *,
    principal: Principal,
    ref: str,
    request_id: str,
    data: ReactivationDecisionCreate,
    if_match: int | None = None,
) -> Tenant:
    """Governance decides a reactivation request; approval starts the reactivation run.

    The tenant stays ``suspended`` until that run has reversed every isolation
    step: its ``reactivated`` step (``complete_reactivation``) makes it active.
    A run that fails leaves a suspended tenant that is still isolated, never an
    "active" one that is not.
    """
    tenant = _lock(session, principal=principal, ref=ref, if_match=if_match)
    # The state first: reactivating a tenant that is not suspended is a 409 naming
    # its state, not a 404 about a request that cannot exist in that state.
    lifecycle.ensure_possible(TenantState(tenant.state), TenantEvent.REACTIVATE)
    request = approvals.pending_request(session, tenant_id=tenant.id, kind=approvals.REACTIVATION)
    if request.id != request_id:
        raise NotFound(f"no pending reactivation request {request_id!r} for {tenant.name}")
    if data.decision == "approve":
        _no_suspension_step_running(session, tenant)
    status = approvals.decide(
        session,
        request=request,
        principal=principal,
        role="governance",
        decision=data.decision,
        comment=data.comment,
        risk_ref=data.risk_ref,
    )
    detail: dict[str, Any] = {
        "approval_request_id": request.id,
        "role": "governance",
        "decision": data.decision,
        "comment": data.comment,
        "risk_ref": data.risk_ref,
    }
    announcements.approval_recorded(
        session,
        tenant,
        principal=principal,
        request_id=request.id,
        kind=approvals.REACTIVATION,
        role="governance",
        decision=data.decision,
        status=status,
        comment=data.comment,
        risk_ref=data.risk_ref,
    )
    if status == "approved":
        _no_reactivation_running(session, tenant)  # a retried run carries another approval
        superseded = "superseded by an approved reactivation"
        # A suspension still running would go on isolating what the reactivation restores.
        if stopped := runs.cancel_open(
            session, tenant, principal, reason=superseded, runbook_id=runs.SUSPENSION_RUNBOOK
        ):
            detail["cancelled_runs"] = stopped
        if closed := runs.close_failed(session, tenant, principal, reason=superseded):
            detail["closed_runs"] = closed
        detail["run_id"] = runs.start(
            session, runs.REACTIVATION_RUNBOOK, tenant, principal, approval_request_id=request.id
        )
    tenant.updated_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor=principal,
        action=f"tenant.reactivation.{status}",
        tenant_id=tenant.id,
        changes={},
        detail=detail,
    )
    return tenant


def complete_reactivation(
    session: Session, *, principal: Principal, ref: str, request_id: str, run_id: str
) -> Tenant:
    """Make a suspended tenant active again: the last step of its reactivation run.

    Only on the approved reactivation request the run was started for, and only
    for the suspension it was approved in: an approval is spent once the tenant
    is suspended again after it, or once a newer reactivation was approved — a
    failed run retried months later must not reopen a tenant nobody approved
    reopening. The runbook calls this after it has restored network, queues,
    secrets and access. A reactivation request still pending is cancelled: the
    tenant it asks about is active.
    """
    tenant = _lock(session, principal=principal, ref=ref, if_match=None)
    request = approvals.approved_request(
        session, request_id=request_id, tenant_id=tenant.id, kind=approvals.REACTIVATION
    )
    decided = as_utc(request.decided_at or request.created_at)
    suspensions = audit.entries_about(
        session, tenant_id=tenant.id, action="tenant.suspended", since=decided
    )
    if any(as_utc(entry.at) > decided for entry in suspensions):
        raise Conflict(
            f"tenant {tenant.name} was suspended again after reactivation request {request.id}"
            " was approved; that approval is spent: file a new reactivation request"
        )
    newer = [
        r.id
        for r in approvals.list_for_tenant(session, tenant_id=tenant.id)
        if r.kind == approvals.REACTIVATION
        and r.status == "approved"
        and r.decided_at is not None
        and as_utc(r.decided_at) > decided
    ]
    if newer:
        raise Conflict(
            f"a newer reactivation of {tenant.name} was approved ({newer[-1]});"
            f" request {request.id} no longer reactivates it"
        )
    cancelled = approvals.cancel_pending(session, tenant_id=tenant.id, kind=approvals.REACTIVATION)
    return _move(
        session,
        tenant,
        TenantEvent.REACTIVATE,
        principal=principal,
        action="tenant.reactivated",
        facts=Facts(reactivation_approved=True),
        detail={"approval_request_id": request.id, "run_id": run_id, "cancelled": cancelled},
    )


def reactivation_run(session: Session, tenant_id: str) -> str | None:
    """The run carrying out an approved reactivation of the tenant, while it is open."""
    running = engine.open_runs(
        session, tenant_id=tenant_id, runbook_id=runs.REACTIVATION_RUNBOOK, lock=False
    )
    return running[0].id if running else None


def _no_reactivation_running(session: Session, tenant: Tenant) -> None:
    """``Conflict`` while an approved reactivation of ``tenant`` is still being carried out."""
    run_id = reactivation_run(session, tenant.id)
    if run_id is not None:
        raise Conflict(
            f"tenant {tenant.name} is being reactivated (run {run_id}); "
            "it becomes active when that run finishes — retry or cancel the run instead"
        )


def _no_suspension_step_running(session: Session, tenant: Tenant) -> None:
    """``Conflict`` while a step of the tenant's suspension is executing: cancelling its
    run cannot stop that step, which could isolate after the reactivation restored. A
    step whose lease lapsed is not executing (its worker is gone): the cancel fences it."""
    now = utcnow()
    for run in engine.open_runs(session, tenant_id=tenant.id, runbook_id=runs.SUSPENSION_RUNBOOK):
        busy = [
            row.name
            for row in engine.steps_of(session, run.id)
            if row.status == "running"
            and row.lease_expires_at is not None
            and as_utc(row.lease_expires_at) > now
        ]
        if busy:
            raise Conflict(
                f"tenant {tenant.name} is still being suspended: step {busy[0]} of run {run.id} "
                "is executing; approve the reactivation once it has ended (its run is then "
                "cancelled and each isolation step reversed)"
            )


def offboard_tenant(
    session: Session,
    *,
    principal: Principal,
    ref: str,
    data: OffboardRequest,
    if_match: int | None = None,
) -> Tenant:
    """Start offboarding; pending approval requests of the tenant are cancelled."""
    tenant = _lock(session, principal=principal, ref=ref, if_match=if_match)
    lifecycle.ensure_possible(TenantState(tenant.state), TenantEvent.OFFBOARD)
    cancelled = approvals.cancel_pending(session, tenant_id=tenant.id)
    stopped = runs.cancel_open(session, tenant, principal, reason="tenant offboarded")
    closed = runs.close_failed(
        session, tenant, principal, reason="tenant offboarded", runbook_ids=None
    )
    run_id = runs.start(session, runs.OFFBOARDING_RUNBOOK, tenant, principal, reason=data.reason)
    return _move(
        session,
        tenant,
        TenantEvent.OFFBOARD,
        principal=principal,
        action="tenant.offboarding",
        detail={
            "reason": data.reason,
            "ticket_ref": data.ticket_ref,
            "cancelled": cancelled,
            "cancelled_runs": stopped,
            **({"closed_runs": closed} if closed else {}),
            "run_id": run_id,
        },
    )


def change_tier(
    session: Session, *, principal: Principal, ref: str, tier: str, reason: str
) -> Tenant:
    """Move a tenant to another tier (its quota and limits follow at the next GitOps sync).

    Reached through an approved playbook step (Resource Exhaustion, whose
    ``quota.propose`` names a tier the platform renders). A tier the render does
    not know would fail the tenant's next GitOps sync: refused here (422).
    """
    tenant = _lock(session, principal=principal, ref=ref, if_match=None)
    if tenant.state != TenantState.ACTIVE.value:
        # A tier is a sized, running tenant's: a quota change approved after a
        # suspension or offboarding has nothing to resize.
        raise InvalidTransition(
            f"the tier of tenant {tenant.name} can change only while it is active, "
            f"not {tenant.state}",
            current_state=tenant.state,
        )
    if tenant.tier == tier:
        return tenant
    check_tier(tier)
    before = snapshot(tenant)
    tenant.tier = tier
    tenant.updated_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor=principal,
        action="tenant.tier_changed",
        tenant_id=tenant.id,
        changes=audit.diff(before, snapshot(tenant)),
        detail={"reason": reason},
    )
    return tenant


def record_step(
    session: Session,
    *,
    principal: Principal,
    ref: str,
    data: LifecycleEventCreate,
    if_match: int | None = None,
) -> Tenant:
    """Record the outcome of a provisioning, verification or offboarding step.

    The runbook engine reports through here; so does an operator who ran a
    step by hand. Verification is QA's to report, the rest Ops'.
    """
    event = TenantEvent(data.event)
    if not principal.roles & STEP_ROLES[event]:
        allowed = " or ".join(sorted(r.value for r in STEP_ROLES[event]))
        raise Forbidden(f"recording {event.value} needs the {allowed} role")
    tenant = _lock(session, principal=principal, ref=ref, if_match=if_match)
    return _move(
        session,
        tenant,
        event,
        principal=principal,
        action=f"tenant.step.{event.value}",
        detail={"note": data.note, "evidence_ref": data.evidence_ref},
    )
