"""Runbook actions of the Access Review checklist.

- ``access_review.snapshot``: the tenant's identity group (through the
  identity port), its bound API tokens, web users and break-glass grants, and
  the access bound to no tenant (``platform``), read in a read-only transaction
  of its own; a re-run reads them again and rewrites the file. The full
  snapshot names people, so it goes to a canonical-JSON file (``TenantFiles``,
  kind ``access-reviews``) served by ``GET /tenants/{tenant}/access-reviews/{run}/snapshot``
  to security, governance, auditors and admins only. Output (readable by every
  role): ``counts``, ``findings`` (a summary naming nobody), ``digest`` (SHA-256
  of the file) and ``snapshot`` (that API path); evidence: the counts, the
  findings summary and the digest.
- ``access_review.record`` (params ``digest``, ``counts``): the gate decisions
  as an ``access_review.recorded`` audit entry naming who decided.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from tenantops.accessreview import service
from tenantops.db import Database
from tenantops.drivers.errors import DriverError
from tenantops.drivers.identity.port import IdentityProvider
from tenantops.kit.clock import utcnow
from tenantops.runbooks.actions import (
    ActionContext,
    FunctionAction,
    Registry,
    StepFailed,
    StepResult,
)
from tenantops.tenants.actions import TenantFiles

if TYPE_CHECKING:
    from tenantops.config import Settings


def _tenant(ctx: ActionContext) -> dict[str, Any]:
    tenant = ctx.inputs.get("tenant")
    if ctx.tenant_id is None or not isinstance(tenant, dict) or not tenant.get("name"):
        raise StepFailed(f"{ctx.step_name}: needs a run against a tenant", retriable=False)
    return {**tenant, "id": ctx.tenant_id}


def access_review_actions(
    settings: Settings, db: Database, *, identity: IdentityProvider
) -> Registry:
    """The Access Review actions, reading groups from ``identity`` (the configured adapter)."""
    files = TenantFiles(settings.data_dir)

    def snapshot_run(ctx: ActionContext) -> StepResult:
        tenant = _tenant(ctx)
        try:
            group = identity.get_group(tenant_id=tenant["id"])
        except DriverError as exc:
            raise StepFailed(str(exc), retriable=exc.retriable) from exc
        # Read-only: a re-run after a crash takes the snapshot again, nothing is written.
        with db.read() as session:
            snapshot = service.take_snapshot(session, tenant=tenant, group=group, now=utcnow())
        # The names go to the file only; the run (readable by every role) keeps figures.
        _path, digest = files.write(service.KIND, ctx, snapshot)
        evidence = {**snapshot["counts"], "findings": snapshot["summary"], "digest": digest}
        output = {
            "counts": snapshot["counts"],
            "findings": snapshot["summary"],
            "digest": digest,
            "snapshot": service.snapshot_api_path(tenant["id"], ctx.run_id),
        }
        return StepResult(output=output, evidence=evidence)

    def record_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        tenant = _tenant(ctx)
        counts = ctx.params.get("counts")
        recorded = service.record_outcome(
            session,
            run_id=ctx.run_id,
            tenant_id=tenant["id"],
            digest_of_snapshot=str(ctx.params.get("digest") or "") or None,
            counts=counts if isinstance(counts, dict) else {},
            fallback_actor=ctx.actor,
        )
        result.output.update(recorded)
        result.evidence.update(recorded)

    return {
        "access_review.snapshot": FunctionAction(snapshot_run),
        "access_review.record": FunctionAction(lambda _ctx: StepResult(), record_apply),
    }
