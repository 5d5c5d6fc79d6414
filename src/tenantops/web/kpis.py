"""Tenant KPIs, overall and per tenant, computed with one set query per measure.

Where each number comes from:

- activation time: ``tenants.created_at`` (the request) to the first audit
  entry ``tenant.step.verified`` (the move to ``active``);
- provisioning SLA: the first ``tenant.approved`` entry to activation; met when
  under 30 minutes and no onboarding run of the tenant breached its SLA; pending
  while the 30 minutes have not passed;
- incidents: audit entries ``tenant.suspended``, ``run.sla_breached`` and
  ``breakglass.opened`` (the security events) of the tenant;
- runs: open runs (running or waiting); stalled when their SLA deadline passed
  or a running run has not moved for an hour;
- cost: month-to-date from the FinOps monthly roll-up in the budget's currency,
  against the budget (the FinOps budget row, else the tenant's own).

The queries read other domains' tables directly: a dashboard over 10,000 tenants
cannot afford one service call per tenant. They only read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from tenantops.audit.models import AuditEntry
from tenantops.auth.policy import COST_READERS
from tenantops.auth.principal import Principal
from tenantops.errors import Unprocessable
from tenantops.finops.budgets import ratio_of
from tenantops.finops.costs import Month, cents, tenants_month
from tenantops.finops.models import Budget
from tenantops.kit.clock import as_utc, utcnow
from tenantops.runbooks.models import Run
from tenantops.tenants.models import Tenant

SLA = timedelta(minutes=30)
STALL_AFTER = timedelta(hours=1)
ONBOARDING_RUNBOOK = "tenant-onboarding"
OPEN_RUNS = ("running", "waiting")
INCIDENT_ACTIONS = {
    "tenant.suspended": "suspensions",
    "run.sla_breached": "sla_breaches",
    "breakglass.opened": "security_events",
}
SORT_KEYS = (
    "name",
    "state",
    "region",
    "tier",
    "activation_seconds",
    "sla",
    "incidents",
    "runs_in_progress",
    "runs_stalled",
    "cost_mtd",
    "budget_ratio",
)
SlaOutcome = Literal["met", "missed", "pending"]


class KpiFilter(BaseModel):
    state: str | None = None
    region: str | None = None
    tier: str | None = None
    sort: str = "name"
    limit: int | None = None  # rows of the table; the overall numbers count every tenant


class TenantKpis(BaseModel):
    """One row of the dashboard table."""

    id: str
    name: str
    display_name: str
    state: str
    region: str
    tier: str
    activation_seconds: float | None
    provisioning_seconds: float | None
    sla: SlaOutcome | None
    suspensions: int
    sla_breaches: int
    security_events: int
    incidents: int
    runs_in_progress: int
    runs_stalled: int
    currency: str
    cost_mtd: Decimal | None
    budget: Decimal
    budget_ratio: Decimal | None


@dataclass(slots=True)
class _Row:
    """A table row while computing: a plain object is ten times cheaper than a model,
    and only the rows shown become ``TenantKpis``."""

    id: str
    name: str
    display_name: str
    state: str
    region: str
    tier: str
    activation_seconds: float | None
    provisioning_seconds: float | None
    sla: SlaOutcome | None
    suspensions: int
    sla_breaches: int
    security_events: int
    incidents: int
    runs_in_progress: int
    runs_stalled: int
    currency: str
    cost_mtd: Decimal | None
    budget: Decimal
    budget_ratio: Decimal | None


ROW_FIELDS = tuple(TenantKpis.model_fields)


class OverallKpis(BaseModel):
    tenants: int
    by_state: dict[str, int]
    activated: int
    activation_median_seconds: float | None
    activation_p90_seconds: float | None
    sla_met: int
    sla_missed: int
    sla_pending: int
    sla_attainment: float | None
    incidents: int
    suspensions: int
    sla_breaches: int
    security_events: int
    runs_in_progress: int
    runs_stalled: int
    cost_mtd: dict[str, Decimal]
    budget: dict[str, Decimal]


class KpiReport(BaseModel):
    generated_at: datetime
    month: str
    filters: KpiFilter
    overall: OverallKpis
    tenants: list[TenantKpis]
    truncated: bool = False


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (``pct`` in 0..100): always a value that occurred."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _first_at(session: Session, action: str, ids: Any) -> dict[str, datetime]:
    query = (
        select(AuditEntry.tenant_id, func.min(AuditEntry.at))
        .where(AuditEntry.action == action, AuditEntry.tenant_id.in_(ids))
        .group_by(AuditEntry.tenant_id)
    )
    return {str(t): as_utc(at) for t, at in session.execute(query)}


def _sort(rows: list[_Row], sort: str) -> list[_Row]:
    key = sort.removeprefix("-")
    if key not in SORT_KEYS:
        raise Unprocessable(
            f"sort must be one of {', '.join(SORT_KEYS)} (prefix - for descending), not {sort!r}",
            param="sort",
        )
    descending = sort.startswith("-")
    present = [r for r in rows if getattr(r, key) is not None]
    missing = [r for r in rows if getattr(r, key) is None]
    present.sort(key=lambda r: (getattr(r, key), r.name), reverse=descending)
    # Rows without a value go last either way: "no cost yet" is not the cheapest.
    return present + sorted(missing, key=lambda r: r.name)


def compute_kpis(
    session: Session,
    *,
    principal: Principal,
    filters: KpiFilter,
    cost_column: str = "EffectiveCost",
    now: datetime | None = None,
) -> KpiReport:
    """The KPI report of the tenants ``principal`` may see, filtered and sorted."""
    now = now or utcnow()
    # Cost is FinOps data: its readers, or a tenant owner for their own tenant (as the
    # cost API); other staff see every KPI but cost.
    sees_cost = principal.tenant_scoped or bool(principal.roles & COST_READERS)
    query = select(
        Tenant.id,
        Tenant.name,
        Tenant.display_name,
        Tenant.state,
        Tenant.region,
        Tenant.tier,
        Tenant.created_at,
        Tenant.monthly_budget,
        Tenant.currency,
    )
    if principal.tenant_scoped:
        if principal.tenant is None:
            query = query.where(Tenant.id.is_(None))
        else:
            query = query.where(or_(Tenant.id == principal.tenant, Tenant.name == principal.tenant))
    for column, value in (
        (Tenant.state, filters.state),
        (Tenant.region, filters.region),
        (Tenant.tier, filters.tier),
    ):
        if value:
            query = query.where(column == value)
    tenants = session.execute(query).all()
    # The tenant filter as a subquery: the database joins, no list of 10,000 ids is bound.
    ids = query.with_only_columns(Tenant.id).scalar_subquery()
    month = Month.parse(None, now=now)

    activated = _first_at(session, "tenant.step.verified", ids)
    approved = _first_at(session, "tenant.approved", ids)
    incidents: dict[tuple[str, str], int] = {}
    for tenant_id, action, count in session.execute(
        select(AuditEntry.tenant_id, AuditEntry.action, func.count())
        .where(AuditEntry.action.in_(list(INCIDENT_ACTIONS)), AuditEntry.tenant_id.in_(ids))
        .group_by(AuditEntry.tenant_id, AuditEntry.action)
    ):
        incidents[(str(tenant_id), INCIDENT_ACTIONS[action])] = int(count)
    onboarding_breached = {
        str(t)
        for (t,) in session.execute(
            select(Run.tenant_id)
            .where(
                Run.runbook_id == ONBOARDING_RUNBOOK,
                Run.tenant_id.in_(ids),
                or_(Run.sla_breached_at.is_not(None), Run.sla_deadline < now),
                or_(Run.finished_at.is_(None), Run.sla_breached_at.is_not(None)),
            )
            .distinct()
        )
    }
    open_runs: dict[str, int] = {}
    stalled: dict[str, int] = {}
    for tenant_id, status, deadline, updated in session.execute(
        select(Run.tenant_id, Run.status, Run.sla_deadline, Run.updated_at).where(
            Run.status.in_(OPEN_RUNS), Run.tenant_id.in_(ids)
        )
    ):
        key = str(tenant_id)
        open_runs[key] = open_runs.get(key, 0) + 1
        late = deadline is not None and as_utc(deadline) < now
        idle = status == "running" and now - as_utc(updated) > STALL_AFTER
        if late or idle:
            stalled[key] = stalled.get(key, 0) + 1
    budgets = {
        str(b.tenant_id): (Decimal(b.amount), b.currency)
        for b in session.execute(select(Budget).where(Budget.tenant_id.in_(ids))).scalars()
    }
    # A few tenants: ask for theirs; many: one pass over the month's roll-up is cheaper.
    few = [t.id for t in tenants] if len(tenants) <= 500 else None
    costs = tenants_month(session, few, month, cost_column=cost_column)

    rows: list[_Row] = []
    for t in tenants:
        created = as_utc(t.created_at)
        active_at = activated.get(t.id)
        approved_at = approved.get(t.id)
        sla: SlaOutcome | None = None
        provisioning = None
        if approved_at is not None:
            if active_at is not None:
                provisioning = (active_at - approved_at).total_seconds()
                met = active_at - approved_at < SLA and t.id not in onboarding_breached
                sla = "met" if met else "missed"
            elif now - approved_at >= SLA or t.id in onboarding_breached:
                sla = "missed"
            else:
                sla = "pending"
        amount, currency = budgets.get(t.id, (Decimal(t.monthly_budget), t.currency))
        spent = costs.get(t.id, {}) if sees_cost else {}
        cost = spent.get(currency)
        cost = cents(cost) if cost is not None else None
        ratio = ratio_of(cost, amount) if cost is not None else None
        counts = {name: incidents.get((t.id, name), 0) for name in INCIDENT_ACTIONS.values()}
        rows.append(
            _Row(
                id=t.id,
                name=t.name,
                display_name=t.display_name,
                state=t.state,
                region=t.region,
                tier=t.tier,
                activation_seconds=(active_at - created).total_seconds() if active_at else None,
                provisioning_seconds=provisioning,
                sla=sla,
                incidents=sum(counts.values()),
                runs_in_progress=open_runs.get(t.id, 0),
                runs_stalled=stalled.get(t.id, 0),
                currency=currency,
                cost_mtd=cost,
                budget=amount.quantize(Decimal("0.01")),
                budget_ratio=ratio,
                **counts,
            )
        )

    activations = [r.activation_seconds for r in rows if r.activation_seconds is not None]
    met_count = sum(1 for r in rows if r.sla == "met")
    missed_count = sum(1 for r in rows if r.sla == "missed")
    by_state: dict[str, int] = {}
    cost_total: dict[str, Decimal] = {}
    budget_total: dict[str, Decimal] = {}
    for r in rows:
        by_state[r.state] = by_state.get(r.state, 0) + 1
        budget_total[r.currency] = budget_total.get(r.currency, Decimal(0)) + r.budget
        if r.cost_mtd is not None:
            cost_total[r.currency] = cost_total.get(r.currency, Decimal(0)) + r.cost_mtd
    overall = OverallKpis(
        tenants=len(rows),
        by_state=dict(sorted(by_state.items())),
        activated=len(activations),
        activation_median_seconds=percentile(activations, 50),
        activation_p90_seconds=percentile(activations, 90),
        sla_met=met_count,
        sla_missed=missed_count,
        sla_pending=sum(1 for r in rows if r.sla == "pending"),
        sla_attainment=(
            round(met_count / (met_count + missed_count), 4) if met_count + missed_count else None
        ),
        incidents=sum(r.incidents for r in rows),
        suspensions=sum(r.suspensions for r in rows),
        sla_breaches=sum(r.sla_breaches for r in rows),
        security_events=sum(r.security_events for r in rows),
        runs_in_progress=sum(r.runs_in_progress for r in rows),
        runs_stalled=sum(r.runs_stalled for r in rows),
        cost_mtd=dict(sorted(cost_total.items())),
        budget=dict(sorted(budget_total.items())),
    )
    ordered = _sort(rows, filters.sort)
    shown = ordered if filters.limit is None else ordered[: filters.limit]
    return KpiReport(
        generated_at=now,
        month=month.label,
        filters=filters,
        overall=overall,
        # Built from values computed here: no need to validate them again.
        tenants=[
            TenantKpis.model_construct(**{f: getattr(r, f) for f in ROW_FIELDS}) for r in shown
        ],
        truncated=len(shown) < len(ordered),
    )


def filter_options(session: Session, principal: Principal) -> dict[str, list[str]]:
    """The states, regions and tiers of the tenants ``principal`` may see, for the filters."""
    options: dict[str, list[str]] = {}
    for name, column in (("state", Tenant.state), ("region", Tenant.region), ("tier", Tenant.tier)):
        query = select(column).distinct().order_by(column)
        if principal.tenant_scoped:
            query = query.where(
                or_(Tenant.id == principal.tenant, Tenant.name == principal.tenant)
                if principal.tenant is not None
                else Tenant.id.is_(None)
            )
        options[name] = [str(v) for (v,) in session.execute(query)]
    return options
