"""Tenant KPIs, overall and per tenant, computed by the database.

Where each number comes from:

- activation time: ``tenants.created_at`` (the request) to
  ``tenants.activated_at`` (the first move to ``active``, written with the
  ``tenant.step.verified`` audit entry);
- provisioning SLA: ``tenants.approved_at`` (both approvals in, written with
  ``tenant.approved``) to activation; met when under 30 minutes and no
  onboarding run of the tenant breached its SLA; pending while the 30 minutes
  have not passed;
- incidents: audit entries ``tenant.suspended``, ``run.sla_breached`` and
  ``breakglass.opened`` (the security events) of the tenant;
- runs: open runs (running or waiting); stalled when their SLA deadline passed
  or a running run has not moved for an hour;
- cost: month-to-date from the FinOps monthly roll-up in the budget's currency,
  against the budget (the FinOps budget row, else the tenant's own).

``_kpi_rows`` builds a row per tenant in SQL: the tenants joined to one
grouped pass over the incident entries of the audit log, one over the open
and breached runs, the budgets and the month's cost (decisions 0025, 0028).
``_report_query`` materializes it once and reads it three times in one
statement: sorted and cut for the table, aggregated for the totals, ranked by
activation time for the median and p90. Tenants per state
and budget per currency come from tenants and budgets alone. No Python pass
over the tenants, and the numbers stay exact (see
``tenantops.kit.sqltime.epoch_micros``).

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
from typing import Any, Literal, TypeVarTuple

from pydantic import BaseModel
from sqlalchemy import (
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
    true,
    union_all,
)
from sqlalchemy.orm import Session

from tenantops.audit.models import AuditEntry
from tenantops.auth.policy import COST_READERS
from tenantops.auth.principal import Principal
from tenantops.errors import Unprocessable
from tenantops.finops.budgets import ratio_of
from tenantops.finops.costs import Month, cents, monthly_measure
from tenantops.finops.models import Budget, CostImport, CostMonthly
from tenantops.kit.clock import utcnow
from tenantops.kit.sqltime import epoch_micros, seconds
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
Columns = TypeVarTuple("Columns")


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

    The reference for the database's pick in ``_report_query``.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


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


class _Money:
    """The budget and month-to-date cost of each tenant, in the budget's currency.

    The budget is the FinOps budget row, else the tenant's own; the cost is the
    month's roll-up of current imports in that currency (None when not seen).
    """

    def __init__(self, *, month: Month, cost_column: str, sees_cost: bool) -> None:
        self.currency = func.coalesce(Budget.currency, Tenant.currency)
        self.budget = func.coalesce(Budget.amount, Tenant.monthly_budget)
        self.cost = (
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
        total = self.cost.c.total
        self.spent = total if sees_cost else cast(null(), total.type)

    def join(self, query: Select[*Columns], *, cost: bool = True) -> Select[*Columns]:
        """``query`` over ``tenants`` joined to the budgets and (``cost``) the month's cost."""
        query = query.outerjoin(Budget, Budget.tenant_id == Tenant.id)
        if not cost:
            return query
        return query.outerjoin(
            self.cost,
            and_(self.cost.c.tenant_id == Tenant.id, self.cost.c.currency == self.currency),
        )


def _kpi_rows(*, where: list[ColumnElement[bool]], money: _Money, now: datetime) -> Select[Any]:
    """One row per visible tenant with every KPI the table shows, unrounded."""
    action = AuditEntry.action
    # Incidents are few: the action index finds them, the group is small. The
    # approval and activation times are on the tenant row (decision 0028); they
    # were nearly all of what this pass read.
    audit = (
        select(
            AuditEntry.tenant_id.label("tenant_id"),
            *(
                func.count(case((action == name, 1))).label(label)
                for name, label in INCIDENT_ACTIONS.items()
            ),
        )
        .where(action.in_(list(INCIDENT_ACTIONS)))
        .group_by(AuditEntry.tenant_id)
        .subquery("audit")
    )
    # Which runs to read: the open ones (an unfinished run is running or waiting), and
    # the closed runs of tenants with a ``run.sla_breached`` entry, which the engine
    # writes in the transaction that marks a run breached. Not every onboarding run: on
    # SQLite each one is a read past its runbook document. Two index reads, not an OR.
    breached_tenants = select(AuditEntry.tenant_id).where(action == "run.sla_breached")
    columns = (
        Run.tenant_id,
        Run.runbook_id,
        Run.status,
        Run.updated_at,
        Run.finished_at,
        Run.sla_deadline,
        Run.sla_breached_at,
    )
    read = union_all(
        select(*columns).where(Run.status.in_(OPEN_RUNS)),
        select(*columns).where(
            Run.tenant_id.in_(breached_tenants),
            Run.sla_breached_at.is_not(None),
            Run.status.not_in(OPEN_RUNS),
        ),
    ).subquery("read")
    is_open = read.c.status.in_(OPEN_RUNS)
    stalled = and_(
        is_open,
        or_(
            read.c.sla_deadline < now,
            and_(read.c.status == "running", read.c.updated_at < now - STALL_AFTER),
        ),
    )
    # (breached or past its deadline) and (still open or breached), simplified.
    onboarding_breached = and_(
        read.c.runbook_id == ONBOARDING_RUNBOOK,
        or_(
            read.c.sla_breached_at.is_not(None),
            and_(read.c.sla_deadline < now, read.c.finished_at.is_(None)),
        ),
    )
    runs = (
        select(
            read.c.tenant_id.label("tenant_id"),
            func.count(case((is_open, 1))).label("open"),
            func.count(case((stalled, 1))).label("stalled"),
            func.count(case((onboarding_breached, 1))).label("breached"),
        )
        .group_by(read.c.tenant_id)
        .subquery("runs")
    )
    currency, budget, spent = money.currency, money.budget, money.spent
    active, approved = epoch_micros(Tenant.activated_at), epoch_micros(Tenant.approved_at)
    breached = func.coalesce(runs.c.breached, 0) > 0
    provisioning = active - approved
    # The columns themselves where no arithmetic is needed: on SQLite each
    # epoch_micros is a strftime per row, and nothing computes it once.
    sla = case(
        (Tenant.approved_at.is_(None), null()),
        (
            Tenant.activated_at.is_not(None),
            case(
                (and_(provisioning < SLA // timedelta(microseconds=1), ~breached), "met"),
                else_="missed",
            ),
        ),
        (or_(Tenant.approved_at <= now - SLA, breached), "missed"),
        else_="pending",
    )
    suspensions, sla_breaches, security = (
        func.coalesce(audit.c[label], 0) for label in INCIDENT_ACTIONS.values()
    )
    query = (
        select(
            Tenant.id.label("id"),
            Tenant.name.label("name"),
            Tenant.display_name.label("display_name"),
            Tenant.state.label("state"),
            Tenant.region.label("region"),
            Tenant.tier.label("tier"),
            (active - epoch_micros(Tenant.created_at)).label("activation"),
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
    )
    return money.join(query).where(*where)


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


PCTS = (50, 90)
# Summed over every row (they come from the audit and run passes); what needs only
# tenants and budgets is grouped in _states_and_budgets.
TOTALS = (
    "suspensions",
    "sla_breaches",
    "security_events",
    "runs_in_progress",
    "runs_stalled",
)


def _report_query(
    rows: Any, sort: str, limit: int | None, currencies: Sequence[str]
) -> Select[Any]:
    """The table rows in order, each carrying the overall totals and percentiles.

    ``rows`` is built once (a materialized CTE) and read three times: sorted and
    cut for the table, aggregated for the totals, and ranked by activation time
    for the percentiles. The rank of ``p`` among ``n`` values is the smallest
    ``r`` with ``100 r >= p n`` (``ceil(p n / 100)``, at least 1), in whole
    numbers so no store rounds it (as ``percentile``). No visible tenant: no row.
    """
    page_query = select(rows).order_by(*_order(rows, sort))
    page = (page_query if limit is None else page_query.limit(limit)).subquery("page")
    totals = select(
        func.count(rows.c.activation).label("total_activated"),
        *(
            func.count(case((rows.c.sla == outcome, 1))).label(f"total_{outcome}")
            for outcome in ("met", "missed", "pending")
        ),
        *(func.coalesce(func.sum(rows.c[name]), 0).label(f"total_{name}") for name in TOTALS),
        *(
            aggregate(case((rows.c.currency == code, rows.c.cost_mtd))).label(f"{label}_{i}")
            for i, code in enumerate(currencies)
            for label, aggregate in (("cost", func.sum), ("priced", func.count))
        ),
    ).subquery("totals")
    ranked = (
        select(
            rows.c.activation,
            func.row_number().over(order_by=rows.c.activation).label("rank"),
            func.count().over().label("n"),
        )
        .where(rows.c.activation.is_not(None))
        .subquery("ranked")
    )
    rank, n = ranked.c.rank, ranked.c.n
    picks = select(
        *(
            func.max(
                case((and_(rank * 100 >= p * n, (rank - 1) * 100 < p * n), ranked.c.activation))
            ).label(f"p{p}")
            for p in PCTS
        )
    ).subquery("picks")
    return (
        select(page, totals, picks)
        .select_from(page.join(totals, true()).join(picks, true()))
        .order_by(*_order(page, sort))
    )


def _states_and_budgets(
    session: Session, money: _Money, where: list[ColumnElement[bool]]
) -> tuple[dict[str, int], dict[str, Decimal]]:
    """Tenants per state and budget per currency: they need no audit, run or cost pass."""
    states = select(Tenant.state, func.count()).where(*where).group_by(Tenant.state)
    by_state = {str(state): int(n) for state, n in session.execute(states)}
    budgets = money.join(
        select(money.currency, func.sum(money.budget)).select_from(Tenant), cost=False
    )
    budget = {
        str(code): cents(_dec(total))
        for code, total in session.execute(budgets.where(*where).group_by(money.currency))
    }
    return dict(sorted(by_state.items())), dict(sorted(budget.items()))


def _tenant_row(row: Any) -> TenantKpis:
    """A table row from the database's figures, rounded as FinOps rounds them."""
    amount = _dec(row.budget_amount if row.budget_amount is not None else row.tenant_budget)
    cost = None if row.cost_mtd is None else cents(_dec(row.cost_mtd))
    # Validated, not model_construct: pydantic-core validates a dict in a third of
    # the time model_construct takes in Python (10,000 rows of an unpaged report).
    return TenantKpis.model_validate(
        {
            "id": row.id,
            "name": row.name,
            "display_name": row.display_name,
            "state": row.state,
            "region": row.region,
            "tier": row.tier,
            "activation_seconds": seconds(row.activation),
            "provisioning_seconds": seconds(row.provisioning),
            "sla": row.sla,
            "suspensions": int(row.suspensions),
            "sla_breaches": int(row.sla_breaches),
            "security_events": int(row.security_events),
            "incidents": int(row.incidents),
            "runs_in_progress": int(row.runs_in_progress),
            "runs_stalled": int(row.runs_stalled),
            "currency": row.currency,
            "cost_mtd": cost,
            "budget": amount.quantize(Decimal("0.01")),
            "budget_ratio": ratio_of(cost, amount) if cost is not None else None,
        }
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
    money = _Money(month=month, cost_column=cost_column, sees_cost=sees_cost)
    rows = _kpi_rows(where=where, money=money, now=now).cte("kpi").prefix_with("MATERIALIZED")
    by_state, budget = _states_and_budgets(session, money, where)
    # Money totals are sums of the unrounded figures, rounded once.
    currencies = list(budget)
    picked = session.execute(_report_query(rows, filters.sort, filters.limit, currencies)).all()
    shown = [_tenant_row(r) for r in picked]
    first = picked[0] if picked else None
    totals = {
        name: int(getattr(first, f"total_{name}")) if first else 0
        for name in ("activated", "met", "missed", "pending", *TOTALS)
    }
    pct = {p: seconds(getattr(first, f"p{p}")) if first else None for p in PCTS}
    cost = {
        code: cents(_dec(getattr(first, f"cost_{i}")))
        for i, code in enumerate(currencies)
        if first is not None and getattr(first, f"priced_{i}")
    }
    met, missed = totals["met"], totals["missed"]
    overall = OverallKpis(
        tenants=sum(by_state.values()),
        by_state=by_state,
        activated=totals["activated"],
        activation_median_seconds=pct[50],
        activation_p90_seconds=pct[90],
        sla_met=met,
        sla_missed=missed,
        sla_pending=totals["pending"],
        sla_attainment=round(met / (met + missed), 4) if met + missed else None,
        incidents=totals["suspensions"] + totals["sla_breaches"] + totals["security_events"],
        suspensions=totals["suspensions"],
        sla_breaches=totals["sla_breaches"],
        security_events=totals["security_events"],
        runs_in_progress=totals["runs_in_progress"],
        runs_stalled=totals["runs_stalled"],
        cost_mtd=cost,
        budget=budget,
    )
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
