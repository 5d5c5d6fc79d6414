"""Runbook actions of the tenant domain: lifecycle transitions, evidence, export, certificate.

These have no side effect outside the control plane and its data directory;
their ``apply`` runs inside the transaction that completes the step, so a
re-run step never transitions twice, and the files they write are named by
run, so a re-run overwrites the same file with the same content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal, Role
from tenantops.errors import InvalidTransition
from tenantops.kit.canonical import canonical_json
from tenantops.kit.clock import utcnow
from tenantops.kit.files import write_atomic
from tenantops.runbooks import engine
from tenantops.runbooks.actions import (
    ActionContext,
    FunctionAction,
    Registry,
    StepFailed,
    StepResult,
)
from tenantops.tenants import service
from tenantops.tenants.schemas import LifecycleEventCreate, TenantCreate, TenantRead

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


def _reactivate_run(ctx: ActionContext) -> StepResult:
    request_id = str(ctx.inputs.get("approval_request_id") or "")
    if not request_id:
        raise StepFailed(
            f"{ctx.step_name}: tenant.reactivate needs the run's approval_request_id",
            retriable=False,
        )
    return StepResult(output={"approval_request_id": request_id})


def _reactivate_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
    """The tenant active again, once the steps before have reversed its isolation."""
    tenant = service.complete_reactivation(
        session,
        principal=ENGINE,
        ref=_tenant_id(ctx),
        request_id=result.output["approval_request_id"],
        run_id=ctx.run_id,
    )
    result.evidence["state"] = tenant.state


def _tier_run(ctx: ActionContext) -> StepResult:
    tier = str(ctx.params.get("tier") or "")
    if not tier:
        raise StepFailed(f"{ctx.step_name}: tenant.change_tier needs a 'tier'", retriable=False)
    return StepResult(output={"tier": tier}, evidence={"tier": tier})


def _tier_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
    tenant = service.change_tier(
        session,
        principal=ENGINE,
        ref=_tenant_id(ctx),
        tier=result.output["tier"],
        reason=str(ctx.params.get("reason") or f"run {ctx.run_id} step {ctx.step_name}"),
    )
    result.evidence["version"] = tenant.version


def _state_run(ctx: ActionContext) -> StepResult:
    wanted = str(ctx.params.get("state") or "active")
    return StepResult(output={"state": wanted}, evidence={"required_state": wanted})


def _state_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
    """Stop the run unless the tenant is in the wanted state now (not when the run began).

    A request approved long after it was filed must not act on a tenant that
    was suspended or offboarded in between: the next step's effect would land
    on a tenant whose isolation is meant to hold.
    """
    tenant = service.get_tenant(session, principal=ENGINE, ref=_tenant_id(ctx))
    wanted = result.output["state"]
    if tenant.state != wanted:
        raise InvalidTransition(
            f"tenant {tenant.name} is {tenant.state}, this step needs it {wanted}",
            current_state=tenant.state,
        )
    result.evidence["state"] = tenant.state


def _create_run(ctx: ActionContext) -> StepResult:
    name = str(ctx.params.get("name") or "")
    if not name:
        raise StepFailed(
            f"{ctx.step_name}: tenant.create_requested needs a 'name'", retriable=False
        )
    return StepResult(output={"name": name}, evidence={"name": name})


def _create_apply(
    session: Session, ctx: ActionContext, result: StepResult, *, regions: Collection[str] = ()
) -> None:
    """Register the requested tenant, with whoever started the run as its requester.

    The run's starter is the tenant owner who asked (the approval gate kept them
    from approving it); the new tenant then waits for its own onboarding
    approvals. The step's idempotency key is the request's, so the tenant is
    registered once whatever happens to the worker.
    """
    fields = {k: v for k, v in ctx.params.items() if k in TenantCreate.model_fields}
    try:
        data = TenantCreate.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        raise StepFailed(f"{ctx.step_name}: {where}: {first['msg']}", retriable=False) from None
    requester = Principal(subject=ctx.actor, via="runbook")
    tenant, _ = service.create_tenant(
        session,
        principal=requester,
        data=data,
        idempotency_key=ctx.idempotency_key,
        regions=regions,
    )
    result.output.update(tenant_id=tenant.id, name=tenant.name, state=tenant.state)
    result.evidence.update(tenant_id=tenant.id, name=tenant.name, state=tenant.state)


def _nothing(ctx: ActionContext) -> StepResult:
    return StepResult()


def _digest(document: Any) -> str:
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def _runs(session: Session, tenant_id: str) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run.id,
            "runbook": run.runbook_id,
            "version": run.runbook_version,
            "hash": run.runbook_hash,
            "status": run.status,
            "steps": [
                {"name": s.name, "status": s.status, "evidence": s.evidence or {}}
                for s in engine.steps_of(session, run.id)
            ],
        }
        for run in engine.runs_of(session, tenant_id=tenant_id)
    ]


class TenantFiles:
    """Evidence bundles, exports and deletion certificates under the data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir

    def path(self, kind: str, tenant_id: str | None, run_id: str) -> Path:
        """Where run ``run_id`` keeps its ``kind`` file: ``<kind>/<tenant>/<run>.json``."""
        return self.root / kind / (tenant_id or "none") / f"{run_id}.json"

    def write(self, kind: str, ctx: ActionContext, document: dict[str, Any]) -> tuple[Path, str]:
        """``document`` as canonical JSON in the run's ``kind`` file; its path and SHA-256."""
        body = canonical_json(document).encode()
        path = self.path(kind, ctx.tenant_id, ctx.run_id)
        write_atomic(path, body)
        return path, hashlib.sha256(body).hexdigest()

    def collect_evidence(self, session: Session, ctx: ActionContext, result: StepResult) -> None:
        """The tenant's audit trail and runs at this moment, hashed; the incident reference."""
        tenant_id = _tenant_id(ctx)
        trail = audit.tenant_trail(session, tenant_id)
        document = {
            "tenant_id": tenant_id,
            "collected_at": utcnow().isoformat(),
            "incident_ref": ctx.params.get("incident_ref") or None,
            "audit": trail,
            "runs": _runs(session, tenant_id),
        }
        path, digest = self.write("evidence", ctx, document)
        result.output.update(bundle=str(path), digest=digest, entries=len(trail))
        result.evidence.update(
            digest=digest, entries=len(trail), incident_ref=document["incident_ref"]
        )

    def export(self, session: Session, ctx: ActionContext, result: StepResult) -> None:
        """The tenant's records as JSON, with the manifest digests its runs committed."""
        tenant_id = _tenant_id(ctx)
        tenant = service.get_tenant(session, principal=ENGINE, ref=tenant_id)
        runs = _runs(session, tenant_id)
        document = {
            "tenant": TenantRead.model_validate(tenant).model_dump(mode="json"),
            "approvals": [
                a.model_dump(mode="json")
                for a in service.list_approvals(session, principal=ENGINE, ref=tenant_id)
            ],
            "audit": audit.tenant_trail(session, tenant_id),
            "runs": runs,
            "manifest_digests": sorted(
                {
                    str(step["evidence"]["manifest_digest"])
                    for run in runs
                    for step in run["steps"]
                    if "manifest_digest" in step["evidence"]
                }
            ),
            "exported_at": utcnow().isoformat(),
        }
        path, digest = self.write("exports", ctx, document)
        result.output.update(bundle=str(path), digest=digest)
        result.evidence.update(bundle=path.name, digest=digest)

    def certificate(self, session: Session, ctx: ActionContext, result: StepResult) -> None:
        """A deletion certificate naming what was removed, with the hashes that prove it."""
        tenant_id = _tenant_id(ctx)
        tenant = service.get_tenant(session, principal=ENGINE, ref=tenant_id)
        body = {
            "certificate": "tenant-deletion",
            "tenant_id": tenant.id,
            "tenant_name": tenant.name,
            "run_id": ctx.run_id,
            "issued_at": utcnow().isoformat(),
            "export_digest": ctx.params.get("export_digest"),
            "removal_commit": ctx.params.get("removal_commit"),
            "revoked": ctx.params.get("revoked", []),
            "audit_head": (audit.tenant_trail(session, tenant_id) or [{"hash": None}])[-1]["hash"],
        }
        document = {**body, "digest": _digest(body)}
        path, _ = self.write("certificates", ctx, document)
        result.output.update(certificate=str(path), digest=document["digest"])
        result.evidence.update(certificate=path.name, digest=document["digest"])


def _tenant_id(ctx: ActionContext) -> str:
    if ctx.tenant_id is None:
        raise ValueError(f"{ctx.step_name} needs a run against a tenant")
    return ctx.tenant_id


def tenant_actions(data_dir: Path, regions: Collection[str] = ()) -> Registry:
    """The tenant domain's actions; a tenant a request registers must be in ``regions``
    (when the platform lists them)."""
    files = TenantFiles(data_dir)
    return {
        "tenant.transition": FunctionAction(_transition_run, _transition_apply),
        "tenant.change_tier": FunctionAction(_tier_run, _tier_apply),
        "tenant.reactivate": FunctionAction(_reactivate_run, _reactivate_apply),
        "tenant.require_state": FunctionAction(_state_run, _state_apply),
        "tenant.create_requested": FunctionAction(
            _create_run, partial(_create_apply, regions=tuple(regions))
        ),
        "tenant.collect_evidence": FunctionAction(_nothing, files.collect_evidence),
        "tenant.export": FunctionAction(_nothing, files.export),
        "tenant.deletion_certificate": FunctionAction(_nothing, files.certificate),
    }
