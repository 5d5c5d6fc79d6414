"""The KPI report of the tenants a principal may see (the dashboard and ``GET /api/v1/kpis``).

How each number is computed is in ``tenantops.kpis.queries``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.auth.policy import COST_READERS
from tenantops.auth.principal import Principal
from tenantops.finops.budgets import ratio_of
from tenantops.finops.costs import Month, cents
from tenantops.kit.clock import utcnow
from tenantops.kit.sqltime import seconds
from tenantops.kpis.queries import (
    PCTS,
    TOTALS,
    Money,
    Provisioning,
    dec,
    kpi_rows,
    platform_incidents,
    provisioning_between,
    report_query,
    states_and_budgets,
    visible,
)
from tenantops.kpis.schemas import KpiFilter, KpiReport, OverallKpis, TenantKpis
from tenantops.tenants.models import Tenant


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (``pct`` in 0..100): always a value that occurred.

    The reference for the database's pick in ``report_query``.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _tenant_row(row: Any) -> TenantKpis:
    """A table row from the database's figures, rounded as FinOps rounds them."""
    amount = dec(row.budget_amount if row.budget_amount is not None else row.tenant_budget)
    cost = None if row.cost_mtd is None else cents(dec(row.cost_mtd))
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
            "incidents": int(row.incidents),
            "open_incidents": int(row.open_incidents),
            "suspensions": int(row.suspensions),
            "sla_breaches": int(row.sla_breaches),
            "security_events": int(row.security_events),
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
    where = visible(principal, filters)
    money = Money(month=month, cost_column=cost_column, sees_cost=sees_cost)
    rows = kpi_rows(where=where, money=money, now=now).cte("kpi").prefix_with("MATERIALIZED")
    by_state, budget, currencies = states_and_budgets(session, money, where)
    # Money totals are sums of the unrounded figures, rounded once.
    picked = session.execute(report_query(rows, filters.sort, filters.limit, currencies)).all()
    shown = [_tenant_row(r) for r in picked]
    first = picked[0] if picked else None
    totals = {
        name: int(getattr(first, f"total_{name}")) if first else 0
        for name in ("activated", "met", "missed", "pending", *TOTALS)
    }
    pct = {p: seconds(getattr(first, f"p{p}")) if first else None for p in PCTS}
    cost = {
        code: cents(dec(getattr(first, f"cost_{i}")))
        for i, code in enumerate(currencies)
        if first is not None and getattr(first, f"priced_{i}")
    }
    met, missed = totals["met"], totals["missed"]
    # The platform's incidents belong to no tenant: counted when the view is the whole
    # fleet (staff, no filter), so the figure is what /records lists; not in a view
    # narrowed to some tenants, nor shown to a tenant owner (decision 0041).
    whole_fleet = not principal.tenant_scoped and not (
        filters.state or filters.region or filters.tier
    )
    platform = platform_incidents(session) if whole_fleet else None
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
        incidents=totals["incidents"] + (platform[0] if platform else 0),
        open_incidents=totals["open_incidents"] + (platform[1] if platform else 0),
        platform_incidents=platform[0] if platform else None,
        platform_open_incidents=platform[1] if platform else None,
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
    scope = visible(principal, KpiFilter())
    options: dict[str, list[str]] = {}
    for name, column in (("state", Tenant.state), ("region", Tenant.region), ("tier", Tenant.tier)):
        query = select(column).distinct().where(*scope).order_by(column)
        options[name] = [str(v) for (v,) in session.execute(query)]
    return options


def provisioning(session: Session, *, start: datetime, end: datetime) -> Provisioning:
    """Tenants activated in ``[start, end)``, approval to active: count, within SLA, p50, p90.

    For other domains (the weekly SLA/SLO report): every tenant, no scoping.
    """
    return provisioning_between(session, start, end)
