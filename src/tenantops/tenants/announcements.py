"""The events a tenant change announces, written to the outbox in the change's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.events import catalogue, outbox
from tenantops.tenants.models import Tenant


def state_changed(
    session: Session,
    tenant: Tenant,
    *,
    before: str | None,
    event: str | None,
    principal: Principal,
    detail: dict[str, Any] | None = None,
) -> None:
    """``io.tenantops.tenant.<state>``: the tenant reached ``tenant.state``."""
    detail = detail or {}
    outbox.emit(
        session,
        catalogue.TENANT_STATES[tenant.state],
        catalogue.TenantStateChanged(
            tenant_id=tenant.id,
            tenant_name=tenant.name,
            actor=principal.subject,
            from_state=before,
            to_state=tenant.state,
            lifecycle_event=event,
            tier=tenant.tier,
            region=tenant.region,
            reason=detail.get("reason"),
            ticket_ref=detail.get("ticket_ref"),
            run_id=detail.get("run_id"),
        ),
    )


def approval_recorded(
    session: Session,
    tenant: Tenant,
    *,
    principal: Principal,
    request_id: str,
    kind: str,
    role: str,
    decision: str,
    status: str,
    comment: str | None,
    risk_ref: str | None,
) -> None:
    """``io.tenantops.tenant.approval.recorded``: one decision on a tenant request."""
    outbox.emit(
        session,
        catalogue.APPROVAL_RECORDED,
        catalogue.ApprovalRecorded(
            tenant_id=tenant.id,
            tenant_name=tenant.name,
            actor=principal.subject,
            request_id=request_id,
            kind=kind,
            role=role,
            decision=decision,
            status=status,
            comment=comment,
            risk_ref=risk_ref,
        ),
    )
