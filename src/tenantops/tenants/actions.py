"""Runbook actions of the tenant domain: lifecycle transitions and tenant events.

``tenant.transition`` has no side effect outside the control plane; its
``apply`` moves the tenant through the lifecycle table inside the transaction
that completes the step, so a re-run step can never transition twice.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal, Role
from tenantops.runbooks.actions import ActionContext, FunctionAction, Registry, StepResult
from tenantops.tenants import service
from tenantops.tenants.schemas import LifecycleEventCreate

ENGINE = Principal(subject="system:runbook-engine", roles=frozenset({Role.ADMIN}), via="system")


def _transition_run(ctx: ActionContext) -> StepResult:
    return StepResult(output={"event": ctx.params["event"]})


def _transition_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
    if ctx.tenant_id is None:
        raise ValueError("tenant.transition needs a run against a tenant")
    tenant = service.record_step(
        session,
        principal=ENGINE,
        ref=ctx.tenant_id,
        data=LifecycleEventCreate(
            event=ctx.params["event"], note=f"run {ctx.run_id} step {ctx.step_name}"
        ),
    )
    result.evidence["state"] = tenant.state


def tenant_actions() -> Registry:
    return {"tenant.transition": FunctionAction(_transition_run, _transition_apply)}
