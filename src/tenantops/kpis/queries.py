"""The KPI queries: every number of the report, computed by the database.

Where each number comes from:

- activation time: ``tenants.created_at`` (the request) to
  ``tenants.activated_at`` (the first move to ``active``, written with the
  ``tenant.step.verified`` audit entry);
- provisioning SLA: ``tenants.approved_at`` (both approvals in, written with
  ``tenant.approved``) to activation; met when under 30 minutes and no
  onboarding run of the tenant breached its SLA; pending while the 30 minutes
  have not passed;
- incidents: the tenant's ITIL incident records (``itil_records`` of kind
  ``incident``), in any state, all time, as ``/records`` lists them; open
  incidents: those not resolved, closed or cancelled (``itil.states.DONE``, the
  listing's "open"). The overall figures add the platform's incidents (no
  tenant) when the view is not narrowed to some tenants (decision 0041);
- suspensions, SLA breaches, security events: audit entries
  ``tenant.suspended``, ``run.sla_breached`` and ``breakglass.opened`` of the
  tenant: signals beside the incidents, no longer summed into them;
- runs: open runs (running or waiting); stalled when their SLA deadline passed
  or a step that should be moving has not for an hour: due (``ready``, its
  ``wake_at`` passed) and not taken, or taken by a worker whose lease ran out
  and not taken again. A run asleep on a timer, a backoff or a maintenance
  window is not stalled: its step is not due yet;
- cost: month-to-date from the FinOps monthly roll-up in the budget's currency,
  against the budget (the FinOps budget row, else the tenant's own);
- budget total: per currency, the budgets of the tenants that hold one
  (``HOLDS_BUDGET``: approved to offboarding, suspended included), not of a
  request, a rejected or an archived tenant, whose rows still show their own.
  The cost total is every visible tenant's cost: money spent is spent, an
  archived tenant's last days included.

``kpi_rows`` builds a row per tenant in SQL: the tenants joined to one
grouped pass over the signal entries of the audit log, one over the incident
records, one over the open and breached runs, the budgets and the month's cost
(decisions 0025, 0028, 0041).
``report_query`` materializes it once and reads it three times in one
statement: sorted and cut for the table, aggregated for the totals, ranked by
activation time for the median and p90. Tenants per state,
the currencies and the budget per currency come from tenants and budgets alone. No Python pass
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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVarTuple

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    Subquery,
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
from tenantops.auth.principal import Principal
from tenantops.errors import Unprocessable
from tenantops.finops.costs import Month, cents, monthly_measure
from tenantops.finops.models import Budget, CostImport, CostMonthly
from tenantops.itil.models import ItilRecord
from tenantops.itil.states import DONE, Kind
from tenantops.kit.sqltime import epoch_micros, seconds
from tenantops.kpis.schemas import SORT_KEYS, KpiFilter
from tenantops.runbooks.models import Run, RunStep
from tenantops.tenants.lifecycle import TERMINAL, TenantState
from tenantops.tenants.models import Tenant

SLA = timedelta(minutes=30)
STALL_AFTER = timedelta(hours=1)
ONBOARDING_RUNBOOK = "tenant-onboarding"
OPEN_RUNS = ("running", "waiting")
# Audit signals counted per tenant beside the incident records (not summed into them).
SIGNAL_ACTIONS = {
    "tenant.suspended": "suspensions",
    "run.sla_breached": "sla_breaches",
    "breakglass.opened": "security_events",
}
Columns = TypeVarTuple("Columns")
# The states in which a tenant holds a budget the platform carries: from its approval
# (a request's budget is asked for, not granted) until it is archived or rejected (the
# lifecycle's TERMINAL). Suspended or offboarding, it still has one and still spends.
# Derived from the lifecycle, so a new state counts unless it is terminal or a request.
HOLDS_BUDGET = frozenset(TenantState) - TERMINAL - {TenantState.REQUESTED}


def visible(principal: Principal, filters: KpiFilter) -> list[ColumnElement[bool]]:
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


class Money:
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


def kpi_rows(*, where: list[ColumnElement[bool]], money: Money, now: datetime) -> Select[Any]:
    """One row per visible tenant with every KPI the table shows, unrounded."""
    action = AuditEntry.action
    # The signals are few: the action index finds them, the group is small. The
    # approval and activation times are on the tenant row (decision 0028); they
    # were nearly all of what this pass read.
    audit = (
        select(
            AuditEntry.tenant_id.label("tenant_id"),
            *(
                func.count(case((action == name, 1))).label(label)
                for name, label in SIGNAL_ACTIONS.items()
            ),
        )
        .where(action.in_(list(SIGNAL_ACTIONS)))
        .group_by(AuditEntry.tenant_id)
        .subquery("audit")
    )
    # (kind, tenant_id, state) covers it: one index range, no record row read (0016).
    itil = (
        select(
            ItilRecord.tenant_id.label("tenant_id"),
            func.count().label("incidents"),
            func.count(case((ItilRecord.state.not_in(sorted(DONE)), 1))).label("open"),
        )
        .where(ItilRecord.kind == Kind.INCIDENT.value, ItilRecord.tenant_id.is_not(None))
        .group_by(ItilRecord.tenant_id)
        .subquery("itil")
    )
    # Which runs to read: the open ones (an unfinished run is running or waiting), and
    # the closed runs of tenants with a ``run.sla_breached`` entry, which the engine
    # writes in the transaction that marks a run breached. Not every onboarding run: on
    # SQLite each one is a read past its runbook document. Two index reads, not an OR.
    breached_tenants = select(AuditEntry.tenant_id).where(action == "run.sla_breached")
    columns = (
        Run.id,
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
    idle_since = now - STALL_AFTER
    not_moving = select(RunStep.run_id).where(
        or_(
            and_(RunStep.status == "ready", RunStep.wake_at < idle_since),
            and_(RunStep.status == "running", RunStep.lease_expires_at < idle_since),
        )
    )
    stalled = and_(
        is_open,
        or_(read.c.sla_deadline < now, read.c.id.in_(not_moving)),
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
        func.coalesce(audit.c[label], 0) for label in SIGNAL_ACTIONS.values()
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
            func.coalesce(itil.c.incidents, 0).label("incidents"),
            func.coalesce(itil.c.open, 0).label("open_incidents"),
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
        .outerjoin(itil, itil.c.tenant_id == Tenant.id)
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
# Summed over every row (they come from the audit, incident and run passes); what
# needs only tenants and budgets is grouped in states_and_budgets.
TOTALS = (
    "incidents",
    "open_incidents",
    "suspensions",
    "sla_breaches",
    "security_events",
    "runs_in_progress",
    "runs_stalled",
)


def report_query(rows: Any, sort: str, limit: int | None, currencies: Sequence[str]) -> Select[Any]:
    """The table rows in order, each carrying the overall totals and percentiles.

    ``rows`` is built once (a materialized CTE) and read three times: sorted and
    cut for the table, aggregated for the totals, and ranked by activation time
    for the percentiles (``nearest_rank``). No visible tenant: no row.
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
    picks = nearest_rank(rows.c.activation)
    return (
        select(page, totals, picks)
        .select_from(page.join(totals, true()).join(picks, true()))
        .order_by(*_order(page, sort))
    )


def nearest_rank(
    value: ColumnElement[Any], *where: ColumnElement[bool], pcts: Sequence[int] = PCTS
) -> Subquery:
    """One row with a column ``p<p>`` per percentile of ``value`` (NULLs left out), by rank.

    The rank of ``p`` among ``n`` values is the smallest ``r`` with ``100 r >= p n``
    (``ceil(p n / 100)``, at least 1), in whole numbers so no store rounds it: always
    a value that occurred (``service.percentile`` is the reference). No value: NULLs.
    """
    ranked = (
        select(
            value.label("value"),
            func.row_number().over(order_by=value).label("rank"),
            func.count().over().label("n"),
        )
        .where(value.is_not(None), *where)
        .subquery("ranked")
    )
    rank, n = ranked.c.rank, ranked.c.n
    return select(
        *(
            func.max(
                case((and_(rank * 100 >= p * n, (rank - 1) * 100 < p * n), ranked.c.value))
            ).label(f"p{p}")
            for p in pcts
        )
    ).subquery("picks")


@dataclass(frozen=True)
class Provisioning:
    """Tenants activated in a window: how many, how many within ``SLA``, p50 and p90 seconds."""

    activated: int
    within_sla: int
    p50_seconds: float | None
    p90_seconds: float | None


def provisioning_between(session: Session, start: datetime, end: datetime) -> Provisioning:
    """Approval (``approved_at``) to ``activated_at`` of the tenants activated in ``[start, end)``.

    What the weekly SLA/SLO report shows as activation time: the provisioning
    SLA's span, ranked by ``nearest_rank`` as the dashboard's percentiles.
    """
    taken = epoch_micros(Tenant.activated_at) - epoch_micros(Tenant.approved_at)
    in_window = [Tenant.activated_at >= start, Tenant.activated_at < end]
    limit = SLA // timedelta(microseconds=1)
    totals = (
        select(
            func.count(taken).label("activated"),
            func.count(case((taken < limit, 1))).label("within_sla"),
        )
        .where(*in_window, Tenant.approved_at.is_not(None))
        .subquery("totals")
    )
    picks = nearest_rank(taken, *in_window)
    row = session.execute(select(totals, picks).select_from(totals.join(picks, true()))).one()
    return Provisioning(
        activated=int(row.activated),
        within_sla=int(row.within_sla),
        p50_seconds=seconds(row.p50),
        p90_seconds=seconds(row.p90),
    )


def platform_incidents(session: Session) -> tuple[int, int]:
    """Incident records of the platform (no tenant): all of them, and the open ones.

    Not in any tenant's row; the overall figures add them when the view covers
    the whole fleet (``service.compute_kpis``, decision 0041).
    """
    query = select(
        func.count(),
        func.count(case((ItilRecord.state.not_in(sorted(DONE)), 1))),
    ).where(ItilRecord.kind == Kind.INCIDENT.value, ItilRecord.tenant_id.is_(None))
    total, still_open = session.execute(query).one()
    return int(total), int(still_open)


def states_and_budgets(
    session: Session, money: Money, where: list[ColumnElement[bool]]
) -> tuple[dict[str, int], dict[str, Decimal], list[str]]:
    """Tenants per state, budget per currency, and the currencies: no audit, run or cost pass.

    The budget total is what the platform carries: only tenants in ``HOLDS_BUDGET``
    count (not a request, a rejected or an archived tenant). The currencies are those of
    every visible tenant, so the cost total still covers a currency in which no tenant
    holds a budget any more (an archived tenant's spend this month).
    """
    states = select(Tenant.state, func.count()).where(*where).group_by(Tenant.state)
    by_state = {str(state): int(n) for state, n in session.execute(states)}
    held = case((Tenant.state.in_(sorted(HOLDS_BUDGET)), money.budget))
    budgets = money.join(
        select(money.currency, func.sum(held)).select_from(Tenant), cost=False
    ).where(*where)
    currencies: list[str] = []
    budget: dict[str, Decimal] = {}
    for code, total in session.execute(budgets.group_by(money.currency)):
        currencies.append(str(code))
        if total is not None:  # NULL: no tenant in this currency holds a budget
            budget[str(code)] = cents(dec(total))
    return dict(sorted(by_state.items())), dict(sorted(budget.items())), sorted(currencies)


def dec(value: object) -> Decimal:
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(str(value))
