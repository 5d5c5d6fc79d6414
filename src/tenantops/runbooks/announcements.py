"""The events a run announces, written to the outbox in the transaction that records them.

Both paths that finish steps use these: ``engine`` (one step at a time, ``emit``)
and ``batch`` (plain steps, set-based, ``outbox.emit_many``), so a run finishing
on either is announced the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from tenantops.events import catalogue, outbox

ENGINE = "system:engine"


def _tenant_name(inputs: Mapping[str, Any]) -> str | None:
    tenant = inputs.get("tenant")
    name = tenant.get("name") if isinstance(tenant, Mapping) else None
    return str(name) if name else None


def emit(session: Session, event: outbox.Event) -> None:
    outbox.emit(session, event.kind, event.data)


def step_finished(
    *,
    run_id: str,
    runbook: str,
    tenant_id: str | None,
    inputs: Mapping[str, Any],
    step: str,
    attempt: int,
    evidence: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> outbox.Event:
    """``run.step.succeeded`` (no ``error``) or ``run.step.failed`` (for good)."""
    return outbox.Event(
        catalogue.STEP_FAILED if error is not None else catalogue.STEP_SUCCEEDED,
        catalogue.StepFinished(
            tenant_id=tenant_id,
            tenant_name=_tenant_name(inputs),
            actor=ENGINE,
            run_id=run_id,
            runbook=runbook,
            step=step,
            status="failed" if error is not None else "succeeded",
            attempt=attempt,
            evidence=dict(evidence or {}),
            error=error,
        ),
    )


def run_finished(
    *,
    run_id: str,
    runbook: str,
    version: str,
    tenant_id: str | None,
    inputs: Mapping[str, Any],
    status: str,
    actor: str = ENGINE,
    error: str | None = None,
) -> outbox.Event:
    """``run.succeeded``, ``run.failed`` or ``run.cancelled``."""
    kinds = {
        "succeeded": catalogue.RUN_SUCCEEDED,
        "failed": catalogue.RUN_FAILED,
        "cancelled": catalogue.RUN_CANCELLED,
    }
    return outbox.Event(
        kinds[status],
        catalogue.RunFinished(
            tenant_id=tenant_id,
            tenant_name=_tenant_name(inputs),
            actor=actor,
            run_id=run_id,
            runbook=runbook,
            version=version,
            status=status,
            error=error,
        ),
    )


def sla_breached(
    *,
    run_id: str,
    runbook: str,
    tenant_id: str | None,
    inputs: Mapping[str, Any],
    step: str | None,
    deadline: str,
) -> outbox.Event:
    """``run.sla_breached``: a run or one of its steps passed its deadline, still open."""
    return outbox.Event(
        catalogue.SLA_BREACHED,
        catalogue.SlaBreached(
            tenant_id=tenant_id,
            tenant_name=_tenant_name(inputs),
            actor=ENGINE,
            run_id=run_id,
            runbook=runbook,
            step=step,
            deadline=deadline,
        ),
    )


def step_held(
    *,
    run_id: str,
    runbook: str,
    tenant_id: str | None,
    inputs: Mapping[str, Any],
    step: str,
    window: str,
    until: str,
) -> outbox.Event:
    """``run.step.held``: a step due outside its maintenance window waits until ``until``."""
    return outbox.Event(
        catalogue.STEP_HELD,
        catalogue.StepHeld(
            tenant_id=tenant_id,
            tenant_name=_tenant_name(inputs),
            actor=ENGINE,
            run_id=run_id,
            runbook=runbook,
            step=step,
            window=window,
            until=until,
        ),
    )
