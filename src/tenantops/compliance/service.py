"""Start a Compliance Evidence Collection and hand out its bundle.

One open collection per tenant and period (a second start is a 409): two
auditors working from two bundles of the same period would sign off different
evidence. Whoever starts it cannot tick its gates (the engine's segregation of
duties): another auditor checks, annotates and signs off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.compliance import periods
from tenantops.compliance.actions import bundle_path
from tenantops.errors import NotFound
from tenantops.kit.clock import utcnow
from tenantops.runbooks import checklists, engine, spec
from tenantops.runbooks.models import Run
from tenantops.tenants import service as tenants
from tenantops.tenants.schemas import TenantRead

RUNBOOK = "compliance-evidence"


def start_collection(
    session: Session, *, principal: Principal, ref: str, period: str | None
) -> Run:
    """Start the checklist for a tenant's period (default: the last quarter ended).

    A period not over yet is a 422 saying when it ends (its evidence would be
    incomplete); one already being collected for the tenant, a 409 naming the
    open run. The label compared is the canonical one ``periods.parse`` builds.
    """
    tenant = tenants.get_tenant(session, principal=principal, ref=ref)
    # Locked, so two starts at once cannot both find no open collection and both start one.
    session.refresh(tenant, with_for_update=True)
    now = utcnow()
    chosen = periods.ended(periods.parse(period), now) if period else periods.last_quarter(now)
    checklists.refuse_second_open_run(
        session,
        tenant_id=tenant.id,
        runbook_id=RUNBOOK,
        what=f"the compliance evidence of {tenant.name} for {chosen.label}",
        same=lambda r: (r.inputs or {}).get("period") == chosen.label,
    )
    return engine.start_run(
        session,
        loaded=spec.get(spec.shipped(), RUNBOOK),
        actor=principal,
        tenant_id=tenant.id,
        inputs={
            "tenant": TenantRead.model_validate(tenant).model_dump(mode="json"),
            "period": chosen.label,
        },
    )


@dataclass(frozen=True)
class Bundle:
    """A collected bundle on disk and the digest its collect step recorded."""

    path: Path
    digest: str
    period: str


def find_bundle(
    session: Session, *, principal: Principal, ref: str, run_id: str, data_dir: Path
) -> Bundle:
    """The bundle of collection ``run_id`` of tenant ``ref`` (404 if there is none yet)."""
    tenant = tenants.get_tenant(session, principal=principal, ref=ref)
    collect = checklists.finished_step(
        session,
        run_id=run_id,
        tenant_id=tenant.id,
        runbook_id=RUNBOOK,
        step="collect",
        what=f"compliance evidence collection {run_id!r} of {tenant.name}",
    )
    evidence = collect.evidence or {}
    path = bundle_path(data_dir, tenant.id, run_id, evidence.get("bundle"))
    if path is None or not path.is_file():
        raise NotFound(f"collection {run_id} has no bundle yet")
    return Bundle(path=path, digest=str(evidence.get("digest")), period=str(evidence.get("period")))
