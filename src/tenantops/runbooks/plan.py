"""``runbooks test --dry-run``: a runbook's steps with their params rendered for a sample tenant.

Nothing is done: the sample tenant lives in a throwaway database, and only the
``gitops.plan`` action (which commits nothing) is run, to preview manifests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tenantops.kit.clock import set_clock
from tenantops.runbooks import engine
from tenantops.runbooks.actions import ActionContext, Registry
from tenantops.runbooks.sandbox import (
    TESTER,
    ActionsFactory,
    Clock,
    inputs_for,
    sandbox,
    setup_tenant,
)
from tenantops.runbooks.spec import Loaded
from tenantops.tenants.schemas import TenantRead


@dataclass
class PlannedStep:
    name: str
    title: str | None
    kind: str
    what: str
    timeout: str
    attempts: int
    params: Any
    unresolved: str | None = None
    preview: dict[str, Any] | None = None
    preview_error: str | None = None


@dataclass
class Plan:
    """What ``runbooks test --dry-run`` prints: the steps, rendered for a sample tenant."""

    runbook: str
    version: str
    hash: str
    tenant: dict[str, Any] | None
    inputs: dict[str, Any]
    steps: list[PlannedStep]


def plan_runbook(
    loaded: Loaded,
    *,
    build: ActionsFactory,
    inputs: dict[str, Any] | None = None,
    tenant_state: str | None = None,
) -> Plan:
    """The steps of a runbook with their params rendered for a sample tenant; no effects.

    A ``gitops.sync_tenant`` step is previewed with the ``gitops.plan`` action
    when it is installed (the manifests it would commit).
    """
    runbook = loaded.runbook
    clock = Clock()
    set_clock(clock)
    try:
        with sandbox(build) as (db, actions, _checks):
            tenant = setup_tenant(db, actions, clock, runbook, tenant_state, [])
            return _plan(loaded, actions, tenant, inputs_for(runbook, inputs or {}, tenant))
    finally:
        set_clock(None)


def _plan(
    loaded: Loaded, actions: Registry, tenant: TenantRead | None, values: dict[str, Any]
) -> Plan:
    runbook = loaded.runbook
    context = {
        "run": {
            "id": "dry-run",
            "runbook": runbook.id,
            "tenant_id": tenant.id if tenant else None,
            "started_by": TESTER.subject,
        },
        "inputs": values,
        "steps": {},
    }
    steps = []
    for step in runbook.steps:
        planned = PlannedStep(
            step.name,
            step.title,
            step.kind,
            step.does(),
            step.timeout,
            step.retry.attempts,
            step.params,
        )
        try:
            planned.params = engine.render(step.params, context)
        except Exception as exc:  # a template that needs an earlier step's output
            planned.unresolved = f"rendered when it runs ({exc})"
        if (
            step.action == "gitops.sync_tenant"
            and "gitops.plan" in actions
            and planned.unresolved is None
        ):
            ctx = ActionContext(
                run_id="dry-run",
                step_name=step.name,
                tenant_id=tenant.id if tenant else None,
                params=planned.params,
                idempotency_key=f"dry-run/{step.name}",
                attempt=1,
                actor=TESTER.subject,
                inputs=values,
            )
            try:
                planned.preview = actions["gitops.plan"].run(ctx).output
            except Exception as exc:
                planned.preview_error = f"{type(exc).__name__}: {exc}"
        steps.append(planned)
    return Plan(
        runbook.id,
        runbook.version,
        loaded.hash,
        tenant.model_dump(mode="json") if tenant else None,
        values,
        steps,
    )
