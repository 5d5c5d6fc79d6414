"""Self-service requests of tenant owners: submit one, list a tenant's, in their own scope.

A request is a run of a small approval-gated runbook (``REQUEST_RUNBOOKS``):
its first step is a gate for the deciding role, whose segregation of duties
keeps the requester (the run's starter) from approving; then the effect
through existing actions, then the owner is told. Nothing changes before the
gate is approved. The run belongs to the requesting tenant — for a new tenant
too, which does not exist until approved — so a tenant owner sees their
requests with their runs, and nothing of any other tenant.

Who may: a tenant owner for their own tenant (any other is a 404, as in the
registry), an account manager or an admin for any tenant.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.policy import REQUESTERS
from tenantops.auth.principal import SYSTEM, Principal
from tenantops.errors import Conflict, Forbidden, NotFound, Unprocessable
from tenantops.finops import budgets
from tenantops.kit.clock import as_utc
from tenantops.requests import repository
from tenantops.requests.schemas import (
    AccessRequestCreate,
    BudgetRequestCreate,
    Decision,
    Kind,
    QuotaRequestCreate,
    RequestCreate,
    RequestPage,
    RequestRead,
    TenantRequestCreate,
)
from tenantops.runbooks import engine, spec
from tenantops.runbooks.models import Run, RunStep
from tenantops.tenants import service as tenants
from tenantops.tenants.lifecycle import TenantState
from tenantops.tenants.models import Tenant
from tenantops.tenants.schemas import TenantRead

REQUEST_RUNBOOKS: dict[Kind, str] = {
    "tenant": "tenant-request",
    "quota": "quota-change",
    "budget": "budget-change",
    "access": "access-request",
}
KIND_OF = {runbook: kind for kind, runbook in REQUEST_RUNBOOKS.items()}
# A change to a tenant needs one that runs: its namespace and group exist.
NEEDS_ACTIVE: frozenset[Kind] = frozenset({"quota", "access"})
CLOSED = frozenset({TenantState.REJECTED, TenantState.OFFBOARDING, TenantState.ARCHIVED})
# One open request of these kinds per tenant: a second would race the first.
ONE_OPEN: frozenset[Kind] = frozenset({"quota", "budget"})
PAGE = 50


def _requester(principal: Principal) -> None:
    if not principal.roles & REQUESTERS:
        raise Forbidden(
            "requests are filed by the tenant owner, an account manager or an admin "
            f"(you have {', '.join(principal.role_names()) or 'no roles'})"
        )


def _fields(tenant: Tenant, data: RequestCreate, budget_currency: str) -> dict[str, Any]:
    """What the run gets as ``inputs.request``: the body, defaults filled, JSON-ready."""
    fields = data.model_dump(mode="json", exclude_none=True)
    if isinstance(data, TenantRequestCreate):
        fields.setdefault("display_name", data.name)
        fields.setdefault("currency", tenant.currency)
        # The owner of the tenant asking is the owner of the new one.
        fields["business_owner"] = tenant.business_owner
    if isinstance(data, BudgetRequestCreate):
        fields.setdefault("currency", budget_currency)
    if isinstance(data, AccessRequestCreate):
        fields["subject"] = str(data.subject).lower()
    return fields


def _check(session: Session, tenant: Tenant, data: RequestCreate, regions: Collection[str]) -> str:
    """Refuse now what the approved run could not do; the budget's currency."""
    state = TenantState(tenant.state)
    if data.kind in NEEDS_ACTIVE and state is not TenantState.ACTIVE:
        raise Conflict(
            f"a {data.kind} request needs an active tenant; {tenant.name} is {state.value}",
            current_state=state.value,
        )
    if data.kind == "budget" and state in CLOSED:
        raise Conflict(f"tenant {tenant.name} is {state.value}", current_state=state.value)
    if isinstance(data, TenantRequestCreate | QuotaRequestCreate):
        tenants.check_tier(data.tier)
    if isinstance(data, TenantRequestCreate):
        tenants.check_region(data.region, regions)
    if isinstance(data, QuotaRequestCreate) and data.tier == tenant.tier:
        raise Unprocessable(f"the tenant is already on tier {data.tier}", param="tier")
    if isinstance(data, TenantRequestCreate):
        try:
            data.check_name()
        except ValidationError as exc:
            raise Unprocessable(f"name: {exc.errors()[0]['msg']}", param="name") from None
        # Under the audit chain's lock, so the checks below see every tenant and request
        # committed before: two filers on different tenants (each holding only their
        # own tenant's row) would otherwise both find the name free.
        audit.serialize(session)
        try:
            tenants.get_tenant(session, principal=SYSTEM, ref=data.name)
        except NotFound:
            pass
        else:
            raise Conflict(f"the tenant name {data.name!r} is taken", param="name")
        # Two open requests for one name: the second would fail only once approved.
        refuse_requested_name(session, data.name)
    if data.kind in ONE_OPEN:
        runbook_id = REQUEST_RUNBOOKS[data.kind]
        for run in engine.open_runs(session, tenant_id=tenant.id, runbook_id=runbook_id):
            raise Conflict(
                f"a {data.kind} request of {tenant.name} is still open: {run.id}", run_id=run.id
            )
    return budgets.get_budget(session, tenant.id).currency if data.kind == "budget" else ""


def refuse_requested_name(session: Session, name: str) -> None:
    """Refuse ``name`` for a new tenant while an open new-tenant request asks for it.

    Otherwise the request would fail only when approved. Takes the audit
    chain's lock first (``audit.serialize``), as filing a request does, so a
    request filed at the same moment is either seen here or sees the tenant.
    """
    audit.serialize(session)
    for run in repository.open_runs_of(session, REQUEST_RUNBOOKS["tenant"]):
        if ((run.inputs or {}).get("request") or {}).get("name") == name:
            raise Conflict(
                f"an open request asks for the tenant name {name!r} (request {run.id}): "
                "choose another name, or have an account manager decide that request first",
                param="name",
                run_id=run.id,
            )


def submit_request(
    session: Session,
    *,
    principal: Principal,
    ref: str,
    data: RequestCreate,
    regions: Collection[str] = (),
) -> RequestRead:
    """File a request for tenant ``ref``: its run starts at the approval gate, audited.

    A new tenant's region must be one of ``regions`` when the platform lists them.
    """
    _requester(principal)
    tenant = tenants.get_tenant(session, principal=principal, ref=ref)
    # Locked, so two submissions at once cannot both find no open request.
    session.refresh(tenant, with_for_update=True)
    currency = _check(session, tenant, data, regions)
    fields = _fields(tenant, data, currency)
    runbook_id = REQUEST_RUNBOOKS[data.kind]
    session.flush()
    run = engine.start_run(
        session,
        loaded=spec.get(spec.shipped(), runbook_id),
        actor=principal,
        tenant_id=tenant.id,
        inputs={
            "tenant": TenantRead.model_validate(tenant).model_dump(mode="json"),
            "request": fields,
        },
        audited=False,
    )
    session.flush()
    audit.record(
        session,
        actor=principal,
        action="request.submitted",
        tenant_id=tenant.id,
        changes={},
        detail={"run_id": run.id, "kind": data.kind, "runbook": runbook_id, "request": fields},
    )
    gates = repository.gates_of(session, [run.id])
    return _read(run, gates.get(run.id), tenant)


def list_requests(
    session: Session, *, principal: Principal, ref: str, limit: int = PAGE
) -> RequestPage:
    """The requests of tenant ``ref``, newest first (at most ``limit``)."""
    _requester(principal)
    tenant = tenants.get_tenant(session, principal=principal, ref=ref)
    runs = repository.runs_of(session, tenant_id=tenant.id, runbook_ids=list(KIND_OF), limit=limit)
    gates = repository.gates_of(session, [r.id for r in runs])
    return RequestPage(items=[_read(r, gates.get(r.id), tenant) for r in runs])


def _decision(run: Run, gate: RunStep | None) -> Decision:
    if gate is not None and gate.status == "succeeded":
        return "approved"
    if gate is not None and gate.status == "failed":
        return "rejected"
    return "withdrawn" if run.status == "cancelled" else "pending"


def _read(run: Run, gate: RunStep | None, tenant: Tenant) -> RequestRead:
    fields = dict((run.inputs or {}).get("request") or {})
    evidence = (gate.evidence or {}) if gate is not None else {}
    roles = engine.spec_of(run).step(repository.GATE_STEP).gate
    return RequestRead(
        id=run.id,
        kind=KIND_OF[run.runbook_id],
        runbook_id=run.runbook_id,
        tenant_id=tenant.id,
        tenant_name=tenant.name,
        requested_by=run.started_by,
        created_at=as_utc(run.created_at),
        finished_at=as_utc(run.finished_at) if run.finished_at else None,
        status=run.status,
        decision=_decision(run, gate),
        approver_roles=list(roles.roles) if roles else [],
        decided_by=gate.decided_by if gate is not None else None,
        decision_comment=evidence.get("comment"),
        error=run.error,
        fields={k: v for k, v in fields.items() if k not in ("kind", "justification")},
        justification=str(fields.get("justification", "")),
    )
