"""The runbooks a tenant change starts, and the onboarding gate the approvals open.

Called by ``tenants.service`` inside the transaction of the change, so a
tenant change and the run it starts commit together; the change's own audit
entry names the run.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.runbooks import engine, spec
from tenantops.tenants.models import Tenant
from tenantops.tenants.schemas import TenantRead

ONBOARDING_RUNBOOK = "tenant-onboarding"
SUSPENSION_RUNBOOK = "tenant-suspension"
REACTIVATION_RUNBOOK = "tenant-reactivation"
OFFBOARDING_RUNBOOK = "tenant-offboarding"
LIFECYCLE = (ONBOARDING_RUNBOOK, SUSPENSION_RUNBOOK, REACTIVATION_RUNBOOK, OFFBOARDING_RUNBOOK)


def start(
    session: Session, runbook_id: str, tenant: Tenant, principal: Principal, **inputs: Any
) -> str:
    """Start a shipped runbook for ``tenant`` in this transaction; the caller audits it."""
    session.flush()
    run = engine.start_run(
        session,
        loaded=spec.get(spec.shipped(), runbook_id),
        actor=principal,
        tenant_id=tenant.id,
        inputs={"tenant": TenantRead.model_validate(tenant).model_dump(mode="json"), **inputs},
        audited=False,
    )
    return run.id


def cancel_open(
    session: Session,
    tenant: Tenant,
    principal: Principal,
    *,
    reason: str,
    runbook_id: str | None = None,
) -> list[str]:
    """Cancel the tenant's open runs (of one runbook, if given); the caller's audit entry
    names them."""
    return [
        engine.cancel(session, run_id=run.id, principal=principal, reason=reason, audited=False).id
        for run in engine.open_runs(session, tenant_id=tenant.id, runbook_id=runbook_id)
    ]


def close_failed(
    session: Session,
    tenant: Tenant,
    principal: Principal,
    *,
    reason: str,
    runbook_ids: Collection[str] | None = LIFECYCLE,
) -> list[str]:
    """Close the tenant's failed runs (of ``runbook_ids``; ``None``: of every runbook).

    A lifecycle change makes an earlier failed run of the lifecycle wrong to
    resume: a failed suspension retried after the reactivation would isolate an
    active tenant again, a failed reactivation retried after offboarding would
    restore its access. Closed here, in the transaction of the change, nobody
    can retry them; they stay failed (decision 0047).
    """
    return [
        engine.close(session, run_id=run.id, principal=principal, reason=reason, audited=False).id
        for run in engine.failed_runs(session, tenant_id=tenant.id, runbook_ids=runbook_ids)
    ]


def signal_onboarding(
    session: Session, tenant: Tenant, principal: Principal, decision: str, role: str
) -> str | None:
    """Open (or close) the approval gate of the tenant's onboarding run."""
    for run in engine.open_runs(session, tenant_id=tenant.id, runbook_id=ONBOARDING_RUNBOOK):
        engine.signal(
            session,
            run_id=run.id,
            step_name="approval",
            decision=decision,
            # The tenant approvals applied the SoD rules; the gate records who closed it.
            principal=Principal(subject=principal.subject, via="system"),
            role=role,
            comment="decided through the tenant approvals",
            audited=False,
        )
        return run.id
    return None
