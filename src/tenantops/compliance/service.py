"""Start a Compliance Evidence Collection and hand out its bundle.

One open collection per tenant and period (a second start is a 409): two
auditors working from two bundles of the same period would sign off different
evidence. Whoever starts it cannot tick its gates (the engine's segregation of
duties): another auditor checks, annotates and signs off.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.compliance import periods
from tenantops.compliance.actions import bundle_path
from tenantops.errors import NotFound, Unprocessable
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
    # The audit chain's lock first, as start_collections takes it: every run start is
    # audited, so holding it, the check below sees every collection committed and none
    # can commit before this one does — two starts cannot both find none open.
    audit.serialize(session)
    tenant = tenants.get_tenant(session, principal=principal, ref=ref)
    chosen = _period(period)
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
        inputs=_inputs(TenantRead.model_validate(tenant), chosen),
    )


@dataclass(frozen=True)
class Outcome:
    """One tenant of ``start_collections``: the run it started, or the run of the period
    that made it skip the tenant and ``why`` (``open``, or ``collected``: signed off)."""

    tenant_id: str
    tenant_name: str
    run_id: str
    why: str | None = None


@dataclass(frozen=True)
class Fleet:
    """What ``start_collections`` did: the period, the runs it started, the tenants it skipped."""

    period: periods.Period
    started: list[Outcome]
    skipped: list[Outcome]


def start_collections(
    session: Session,
    *,
    principal: Principal,
    period: str | None,
    region: str | None = None,
    tier: str | None = None,
    regions: Collection[str] = (),
) -> Fleet:
    """Start the checklist for the period of every tenant on the platform (active or
    suspended, and active before the period ended), of one region or tier if given.

    A tenant whose collection of the period is open or has succeeded is skipped
    (so starting again after some failed starts only those); all of the runs
    start in this transaction, or none does. The audit chain's lock is held from
    the start to the commit: audited writes elsewhere wait for it meanwhile.
    """
    if tier is not None:
        tenants.check_tier(tier)  # a typo would otherwise start nothing, and say so nowhere
    if region is not None:
        tenants.check_region(region, regions)
    chosen = _period(period)
    # Serialized on the audit chain's lock, taken before anything is read, as by
    # start_collection: no other start can commit a collection in between, and no
    # tenant row is locked, so a transaction that holds a tenant and waits for the
    # chain (a tenant change, a worker's step) cannot deadlock with this one.
    audit.serialize(session)
    if region is not None and not regions and not _placed_in(session, principal, region):
        raise Unprocessable(f"no tenant is placed in region {region!r}", param="region")
    found = tenants.live(
        session,
        principal=principal,
        filters=tenants.TenantFilter(region=region, tier=tier),
        activated_before=chosen.end,
    )
    # A tenant's open collection of the period is named over a signed-off one, a
    # later signed-off one over an earlier.
    held: dict[str, tuple[str, str]] = {}  # tenant id -> (run id, why)
    for run in engine.runs_with_input(
        session, runbook_id=RUNBOOK, name="period", value=chosen.label
    ):
        if run.tenant_id is None or run.status in ("failed", "cancelled"):
            continue
        why = "collected" if run.status == "succeeded" else "open"
        if why == "open" or held.get(run.tenant_id, ("", ""))[1] != "open":
            held[run.tenant_id] = (run.id, why)
    todo = [t for t in found if t.id not in held]
    runs = engine.start_runs(
        session,
        loaded=spec.get(spec.shipped(), RUNBOOK),
        actor=principal,
        runs=[
            engine.NewRun(tenant_id=t.id, inputs=_inputs(TenantRead.model_validate(t), chosen))
            for t in todo
        ],
    )
    return Fleet(
        period=chosen,
        started=[Outcome(t.id, t.name, run.id) for t, run in zip(todo, runs, strict=True)],
        skipped=[Outcome(t.id, t.name, *held[t.id]) for t in found if t.id in held],
    )


def _placed_in(session: Session, principal: Principal, region: str) -> bool:
    """Whether any tenant (in any state) was ever placed in ``region``: with no list of
    served regions configured, a mistyped one would otherwise start nothing silently."""
    filters = tenants.TenantFilter(region=region)
    return tenants.count_tenants(session, principal=principal, filters=filters) > 0


def _period(period: str | None) -> periods.Period:
    """The named period if it is over, else a 422; default: the last quarter ended."""
    now = utcnow()
    return periods.ended(periods.parse(period), now) if period else periods.last_quarter(now)


def _inputs(tenant: TenantRead, period: periods.Period) -> dict[str, Any]:
    return {
        "tenant": tenant.model_dump(mode="json"),
        "period": period.label,
    }


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
