"""Tenant KPIs, overall and per tenant, computed by the database.

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

One statement builds a row per tenant (``_kpi_rows``: the tenants joined to one
grouped pass over the audit entries, one over the runs, the budgets and the
month's cost). The table is that statement sorted and cut by the database; the
overall numbers are aggregates over it, grouped by state and currency (a few
rows); the activation median and p90 are picked by rank with a window
function. No Python pass over the tenants: 10,000 of them cost what 200 do in
Python, and the numbers stay exact (see ``micros_between``).

Totals are sums of the unrounded figures, rounded once (as FinOps' month
totals): a currency's total cost can differ by a cent from the sum of the
rounded per-tenant figures. Sorting is by the unrounded value, ties by name in
the same direction; rows without a value go last by name.

The queries read other domains' tables directly: a dashboard over 10,000 tenants
cannot afford one service call per tenant. They only read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Select,
    and_,
    case,
    cast,
    func,
    null,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from tenantops.audit.models import AuditEntry
from tenantops.auth.policy import COST_READERS
from tenantops.auth.principal import Principal
from tenantops.errors import Unprocessable
from tenantops.finops.budgets import ratio_of
from tenantops.finops.costs import Month, cents, monthly_measure
from tenantops.finops.models import Budget, CostImport, CostMonthly
from tenantops.kit.clock import utcnow
from tenantops.runbooks.models import Run
from tenantops.tenants.models import Tenant

SLA = timedelta(minutes=30)
STALL_AFTER = timedelta(hours=1)
ONBOARDING_RUNBOOK = "tenant-onboarding"
OPEN_RUNS = ("running", "waiting")
ACTIVATED = "tenant.step.verified"
APPROVED = "tenant.approved"
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
MICROS = 1_000_000


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
    """Nearest-rank percentile (``pct`` in 0..100): always a value that occurred.

    The reference for the database's pick in ``_activation_percentiles``.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


class micros_between(FunctionElement[int]):  # noqa: N801 - used like a SQL function
    """Whole microseconds from the second timestamp to the first, on either store.

    Exact, so seconds derived from it equal ``timedelta.total_seconds()`` in Python:
    PostgreSQL's ``EXTRACT(EPOCH FROM interval)`` is a numeric; SQLite has no
    interval, and its ``julianday`` keeps milliseconds only, so the whole seconds
    (``strftime('%s')``) and the microseconds of the stored text are taken apart.
    The one dialect difference of the module lives here, as a SQLAlchemy
    construct: the queries themselves are one code path (decision 0001).
    """

    type = BigInteger()
    name = "micros_between"
    inherit_cache = True


@compiles(micros_between)
def _micros_postgresql(element: micros_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(EXTRACT(EPOCH FROM ({later} - {earlier})) * {MICROS} AS BIGINT)"


@compiles(micros_between, "sqlite")
def _micros_sqlite(element: micros_between, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC, see tenantops.db); characters
    # 21-26 are the microseconds, empty (0) when a writer left them out.
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return (
        f"((CAST(strftime('%s', {later}) AS INTEGER)"
        f" - CAST(strftime('%s', {earlier}) AS INTEGER)) * {MICROS}"
        f" + CAST(substr({later}, 21, 6) AS INTEGER)"
        f" - CAST(substr({earlier}, 21, 6) AS INTEGER))"
    )


def _seconds(micros: int | None) -> float | None:
    # Integer true division is correctly rounded: the same float as total_seconds().
    return None if micros is None else micros / MICROS


def _visible(principal: Principal, filters: KpiFilter) -> list[ColumnElement[bool]]:
    """The conditions on ``tenants`` for the tenants ``principal`` may see, filtered."""
    where: list[ColumnElement[bool]] = []
    if principal.tenant_scoped:
        where.append(
            or_(Tenant.id == principal.tenant, Tenant.name == principal.tenant)
            if principal.tenant is not None
            else Tenant.id.is_(None)
        )
    for column, value in (
        (Tenant.state, filters.state),
        (Tenant.region, filters.region),
        (Tenant.tier, filters.tier),
    ):
        if value:
            where.append(column == value)
    return where


def _kpi_rows(
    *,
    where: list[ColumnElement[bool]],
    sees_cost: bool,
    month: Month,
    cost_column: str,
    now: datetime,
) -> Select[Any]:
    """One row per visible tenant with every KPI the table shows, unrounded."""
    at = AuditEntry.at
    action = AuditEntry.action
    audit = (
        select(
            AuditEntry.tenant_id.label("tenant_id"),
            func.min(case((action == ACTIVATED, at))).label("active_at"),
            func.min(case((action == APPROVED, at))).label("approved_at"),
            *(
                func.count(case((action == name, 1))).label(label)
                for name, label in INCIDENT_ACTIONS.items()
            ),
        )
        .where(action.in_([ACTIVATED, APPROVED, *INCIDENT_ACTIONS]))
        .group_by(AuditEntry.tenant_id)
        .subquery("audit")
    )
    is_open = Run.status.in_(OPEN_RUNS)
    stalled = and_(
        is_open,
        or_(
            Run.sla_deadline < now,
            and_(Run.status == "running", Run.updated_at < now - STALL_AFTER),
        ),
    )
    # (breached or past its deadline) and (still open or breached), simplified.
    onboarding_breached = and_(
        Run.runbook_id == ONBOARDING_RUNBOOK,
        or_(
            Run.sla_breached_at.is_not(None),
            and_(Run.sla_deadline < now, Run.finished_at.is_(None)),
        ),
    )
    runs = (
        select(
            Run.tenant_id.label("tenant_id"),
            func.count(case((is_open, 1))).label("open"),
            func.count(case((stalled, 1))).label("stalled"),
            func.count(case((onboarding_breached, 1))).label("breached"),
        )
        .where(or_(is_open, onboarding_breached))
        .group_by(Run.tenant_id)
        .subquery("runs")
    )
    currency = func.coalesce(Budget.currency, Tenant.currency)
    budget = func.coalesce(Budget.amount, Tenant.monthly_budget)
    cost = (
        select(
            CostMonthly.tenant_id.label("tenant_id"),
            CostMonthly.currency.label("currency"),
            func.sum(monthly_measure(cost_column)).label("total"),
        )
        .join(CostImport, CostImport.id == CostMonthly.import_id)
        .where(CostImport.superseded_by.is_(None), CostMonthly.month == month.first)
        .group_by(CostMonthly.tenant_id, CostMonthly.currency)
        .subquery("cost")
    )
    spent = cost.c.total if sees_cost else cast(null(), cost.c.total.type)
    active_at, approved_at = audit.c.active_at, audit.c.approved_at
    breached = func.coalesce(runs.c.breached, 0) > 0
    provisioning = micros_between(active_at, approved_at)
    sla = case(
        (approved_at.is_(None), null()),
        (
            active_at.is_not(None),
            case(
                (and_(provisioning < int(SLA / timedelta(microseconds=1)), ~breached), "met"),
                else_="missed",
            ),
        ),
        (or_(approved_at <= now - SLA, breached), "missed"),
        else_="pending",
    )
    suspensions, sla_breaches, security = (
        func.coalesce(audit.c[label], 0) for label in INCIDENT_ACTIONS.values()
    )
    return (
        select(
            Tenant.id.label("id"),
            Tenant.name.label("name"),
            Tenant.display_name.label("display_name"),
            Tenant.state.label("state"),
            Tenant.region.label("region"),
            Tenant.tier.label("tier"),
            micros_between(active_at, Tenant.created_at).label("activation"),
            provisioning.label("provisioning"),
            sla.label("sla"),
            suspensions.label("suspensions"),
            sla_breaches.label("sla_breaches"),
            security.label("security_events"),
            (suspensions + sla_breaches + security).label("incidents"),
            func.coalesce(runs.c.open, 0).label("runs_in_progress"),
            func.coalesce(runs.c.stalled, 0).label("runs_stalled"),
            currency.label("currency"),
            Budget.amount.label("budget_amount"),
            Tenant.monthly_budget.label("tenant_budget"),
            budget.label("budget"),
            spent.label("cost_mtd"),
            # Float: SQLite divides two whole numbers as integers.
            (cast(spent, Float) / func.nullif(budget, 0)).label("budget_ratio"),
        )
        .select_from(Tenant)
        .outerjoin(audit, audit.c.tenant_id == Tenant.id)
        .outerjoin(runs, runs.c.tenant_id == Tenant.id)
        .outerjoin(Budget, Budget.tenant_id == Tenant.id)
        .outerjoin(cost, and_(cost.c.tenant_id == Tenant.id, cost.c.currency == currency))
        .where(*where)
    )


def _order(rows: Any, sort: str) -> list[ColumnElement[Any]]:
    """ORDER BY for ``sort``: by the key, ties by name the same way; no value last, by name."""
    key = sort.removeprefix("-")
    if key not in SORT_KEYS:
        raise Unprocessable(
            f"sort must be one of {', '.join(SORT_KEYS)} (prefix - for descending), not {sort!r}",
            param="sort",
        )
    column = rows.c.activation if key == "activation_seconds" else rows.c[key]
    name = rows.c.name
    if sort.startswith("-"):
        return [column.desc().nulls_last(), case((column.is_(None), name)), name.desc()]
    return [column.asc().nulls_last(), name.asc()]


def _activation_percentiles(
    session: Session, where: list[ColumnElement[bool]], pcts: Sequence[int]
) -> dict[int, float | None]:
    """Nearest-rank percentiles of activation time, picked by the database.

    The rank of ``p`` among ``n`` values is the smallest ``r`` with ``100 r >= p n``
    (``ceil(p n / 100)``, at least 1), in whole numbers so no store rounds it.
    """
    first = (
        select(
            AuditEntry.tenant_id.label("tenant_id"),
            func.min(AuditEntry.at).label("active_at"),
        )
        .where(AuditEntry.action == ACTIVATED)
        .group_by(AuditEntry.tenant_id)
        .subquery("activated")
    )
    micros = micros_between(first.c.active_at, Tenant.created_at)
    ranked = (
        select(
            micros.label("micros"),
            func.row_number().over(order_by=micros).label("rank"),
            func.count().over().label("n"),
        )
        .select_from(Tenant)
        .join(first, first.c.tenant_id == Tenant.id)
        .where(*where)
        .subquery("ranked")
    )
    wanted = or_(
        *(
            and_(ranked.c.rank * 100 >= p * ranked.c.n, (ranked.c.rank - 1) * 100 < p * ranked.c.n)
            for p in pcts
        )
    )
    picked = session.execute(select(ranked.c.rank, ranked.c.n, ranked.c.micros).where(wanted))
    found: dict[int, float | None] = dict.fromkeys(pcts)
    for rank, n, value in picked:
        for p in pcts:
            if rank == max(1, -(-p * n // 100)):
                found[p] = _seconds(value)
    return found


def _overall(session: Session, rows: Any, where: list[ColumnElement[bool]]) -> OverallKpis:
    """The overall numbers: the rows grouped by state and currency, summed here (a few rows)."""
    sums = ("suspensions", "sla_breaches", "security_events", "runs_in_progress", "runs_stalled")
    grouped = session.execute(
        select(
            rows.c.state,
            rows.c.currency,
            func.count(),
            func.count(rows.c.activation),
            func.count(case((rows.c.sla == "met", 1))),
            func.count(case((rows.c.sla == "missed", 1))),
            func.count(case((rows.c.sla == "pending", 1))),
            *(func.sum(rows.c[s]) for s in sums),
            func.sum(rows.c.cost_mtd),
            func.count(rows.c.cost_mtd),
            func.sum(rows.c.budget),
        ).group_by(rows.c.state, rows.c.currency)
    ).all()
    counts = dict.fromkeys(("tenants", "activated", "met", "missed", "pending", *sums), 0)
    by_state: dict[str, int] = {}
    cost: dict[str, Decimal] = {}
    budget: dict[str, Decimal] = {}
    for state, currency, *numbers in grouped:
        spent, priced, allotted = numbers[-3:]
        for key, value in zip(counts, numbers[:-3], strict=True):
            counts[key] += int(value or 0)
        by_state[state] = by_state.get(state, 0) + int(numbers[0])
        budget[currency] = budget.get(currency, Decimal(0)) + _dec(allotted)
        if priced:
            cost[currency] = cost.get(currency, Decimal(0)) + _dec(spent)
    met, missed = counts["met"], counts["missed"]
    pct = _activation_percentiles(session, where, (50, 90))
    incidents = counts["suspensions"] + counts["sla_breaches"] + counts["security_events"]
    return OverallKpis(
        tenants=counts["tenants"],
        by_state=dict(sorted(by_state.items())),
        activated=counts["activated"],
        activation_median_seconds=pct[50],
        activation_p90_seconds=pct[90],
        sla_met=met,
        sla_missed=missed,
        sla_pending=counts["pending"],
        sla_attainment=round(met / (met + missed), 4) if met + missed else None,
        incidents=incidents,
        suspensions=counts["suspensions"],
        sla_breaches=counts["sla_breaches"],
        security_events=counts["security_events"],
        runs_in_progress=counts["runs_in_progress"],
        runs_stalled=counts["runs_stalled"],
        cost_mtd={c: cents(v) for c, v in sorted(cost.items())},
        budget={c: cents(v) for c, v in sorted(budget.items())},
    )


def _tenant_row(row: Any) -> TenantKpis:
    """A table row from the database's figures, rounded as FinOps rounds them."""
    amount = _dec(row.budget_amount if row.budget_amount is not None else row.tenant_budget)
    cost = None if row.cost_mtd is None else cents(_dec(row.cost_mtd))
    # Built from values computed here: no need to validate them again.
    return TenantKpis.model_construct(
        id=row.id,
        name=row.name,
        display_name=row.display_name,
        state=row.state,
        region=row.region,
        tier=row.tier,
        activation_seconds=_seconds(row.activation),
        provisioning_seconds=_seconds(row.provisioning),
        sla=row.sla,
        suspensions=int(row.suspensions),
        sla_breaches=int(row.sla_breaches),
        security_events=int(row.security_events),
        incidents=int(row.incidents),
        runs_in_progress=int(row.runs_in_progress),
        runs_stalled=int(row.runs_stalled),
        currency=row.currency,
        cost_mtd=cost,
        budget=amount.quantize(Decimal("0.01")),
        budget_ratio=ratio_of(cost, amount) if cost is not None else None,
    )


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
    month = Month.parse(None, now=now)
    # Cost is FinOps data: its readers, or a tenant owner for their own tenant (as the
    # cost API); other staff see every KPI but cost.
    sees_cost = principal.tenant_scoped or bool(principal.roles & COST_READERS)
    where = _visible(principal, filters)
    rows = _kpi_rows(
        where=where, sees_cost=sees_cost, month=month, cost_column=cost_column, now=now
    ).subquery("kpi")
    order = _order(rows, filters.sort)
    overall = _overall(session, rows, where)
    page = select(rows).order_by(*order)
    if filters.limit is not None:
        page = page.limit(filters.limit)
    shown = [_tenant_row(r) for r in session.execute(page)]
    return KpiReport(
        generated_at=now,
        month=month.label,
        filters=filters,
        overall=overall,
        tenants=shown,
        truncated=len(shown) < overall.tenants,
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


def _dec(value: object) -> Decimal:
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(str(value))
