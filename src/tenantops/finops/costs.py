"""Cost queries over ``cost_daily`` of current (not superseded) imports, and the forecast.

Month-to-date cost is the sum of the chosen FOCUS cost column
(``FinOpsSettings.cost_column``, EffectiveCost by default) over the days of
the month. The forecast is a straight burn rate::

    forecast = MTD / elapsed_days × days_in_month

where ``elapsed_days`` is the time from the first of the month to now in
days (fractional), at least 1 so the first hours of a month do not project a
few cents to thousands. A month that is over forecasts its final cost; a
month not yet begun forecasts 0.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from tenantops.errors import Unprocessable
from tenantops.finops.models import CostDaily, CostImport, CostMonthly
from tenantops.kit.clock import utcnow

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Month:
    """A calendar month: its first day, the first day of the next, its length."""

    first: date
    after: date

    @property
    def days(self) -> int:
        return (self.after - self.first).days

    @property
    def label(self) -> str:
        return self.first.strftime("%Y-%m")

    @classmethod
    def parse(cls, text: str | None, *, now: datetime | None = None) -> Month:
        """``YYYY-MM``, or the month of ``now`` (the clock) when ``text`` is empty."""
        if not text:
            today = (now or utcnow()).astimezone(UTC)
            year, month = today.year, today.month
        else:
            try:
                year_s, month_s = text.split("-")
                year, month = int(year_s), int(month_s)
                # 1000..9998: four digits, and a following month that still has four.
                if len(year_s) != 4 or not 1000 <= year <= 9998 or not 1 <= month <= 12:
                    raise ValueError(text)
            except ValueError as exc:
                raise Unprocessable(
                    f"month must be a year and a month 01-12, like 2026-10; not {text!r}",
                    param="month",
                ) from exc
        days = calendar.monthrange(year, month)[1]
        first = date(year, month, 1)
        return cls(first=first, after=date.fromordinal(first.toordinal() + days))


def cents(value: Decimal) -> Decimal:
    """Money as every FinOps figure shows it: two places, half up (half even would make
    the same cost differ by a cent between the costs API, budgets and reports)."""
    return value.quantize(CENT, ROUND_HALF_UP)


def crossed(cost: Decimal, budget: Decimal, thresholds: list[int]) -> list[int]:
    """The thresholds (percent of ``budget``) that ``cost`` has reached."""
    return [t for t in thresholds if budget > 0 and cost * 100 >= budget * t]


def forecast(cost: Decimal, month: Month, now: datetime | None = None) -> Decimal:
    """Month-end cost at the current burn rate (see the module docstring)."""
    now = (now or utcnow()).astimezone(UTC)
    start = datetime(month.first.year, month.first.month, 1, tzinfo=UTC)
    end = datetime(month.after.year, month.after.month, 1, tzinfo=UTC)
    if now >= end:
        return cost.quantize(CENT, ROUND_HALF_UP)
    if now < start:
        return Decimal(0).quantize(CENT)
    elapsed = max(Decimal((now - start).total_seconds()) / Decimal(86400), Decimal(1))
    return (cost / elapsed * month.days).quantize(CENT, ROUND_HALF_UP)


def measure(cost_column: str) -> InstrumentedAttribute[Decimal]:
    return CostDaily.billed_cost if cost_column == "BilledCost" else CostDaily.effective_cost


def current(query: Any, month: Month) -> Any:
    """Restrict a query over ``cost_daily`` to ``month`` and to current imports."""
    return query.join(CostImport, CostImport.id == CostDaily.import_id).where(
        CostImport.superseded_by.is_(None),
        CostDaily.day >= month.first,
        CostDaily.day < month.after,
    )


@dataclass
class TenantMonth:
    """One tenant's cost of a month: per currency, per service, per day."""

    by_currency: dict[str, Decimal] = field(default_factory=dict)
    services: list[tuple[str, str, Decimal]] = field(default_factory=list)
    days: list[tuple[date, str, Decimal]] = field(default_factory=list)


def tenant_month(
    session: Session,
    tenant_id: str,
    month: Month,
    *,
    cost_column: str,
    top: int = 5,
    currency: str | None = None,
) -> TenantMonth:
    """Cost of one tenant in ``month`` (index ``ix_cost_daily_tenant``); the top services
    in ``currency`` when given (ranked before the cut, so another currency cannot crowd
    them out), else across currencies."""
    cost = func.sum(measure(cost_column))
    base = current(select(CostDaily.currency, cost), month).where(CostDaily.tenant_id == tenant_id)
    result = TenantMonth()
    for code, total in session.execute(base.group_by(CostDaily.currency)):
        result.by_currency[str(code)] = _dec(total)
    ranked = current(select(CostDaily.service_name, CostDaily.currency, cost), month).where(
        CostDaily.tenant_id == tenant_id
    )
    if currency is not None:
        ranked = ranked.where(CostDaily.currency == currency)
    services = session.execute(
        ranked.group_by(CostDaily.service_name, CostDaily.currency).order_by(cost.desc()).limit(top)
    )
    result.services = [(str(s), str(c), _dec(t)) for s, c, t in services]
    days = session.execute(
        current(select(CostDaily.day, CostDaily.currency, cost), month)
        .where(CostDaily.tenant_id == tenant_id)
        .group_by(CostDaily.day, CostDaily.currency)
        .order_by(CostDaily.day)
    )
    result.days = [(d, str(c), _dec(t)) for d, c, t in days]
    return result


def monthly_measure(cost_column: str) -> InstrumentedAttribute[Decimal]:
    return CostMonthly.billed_cost if cost_column == "BilledCost" else CostMonthly.effective_cost


def tenants_month(
    session: Session, tenant_ids: list[str] | None, month: Month, *, cost_column: str
) -> dict[str | None, dict[str, Decimal]]:
    """Cost per tenant (None: unallocated) and currency in ``month``; all tenants if None.

    Reads ``cost_monthly``: one row per tenant, currency and import of the month.
    """
    query = (
        select(CostMonthly.tenant_id, CostMonthly.currency, func.sum(monthly_measure(cost_column)))
        .join(CostImport, CostImport.id == CostMonthly.import_id)
        .where(CostImport.superseded_by.is_(None), CostMonthly.month == month.first)
        .group_by(CostMonthly.tenant_id, CostMonthly.currency)
    )
    if tenant_ids is not None:
        query = query.where(CostMonthly.tenant_id.in_(tenant_ids))
    totals: dict[str | None, dict[str, Decimal]] = {}
    for tenant_id, currency, total in session.execute(query):
        key = None if tenant_id is None else str(tenant_id)
        totals.setdefault(key, {})[str(currency)] = _dec(total)
    return totals


def month_totals(
    session: Session, month: Month, *, cost_column: str
) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """All cost of ``month`` per currency, and the unallocated part of it."""
    unallocated = CostMonthly.tenant_id.is_(None)
    query = (
        select(unallocated, CostMonthly.currency, func.sum(monthly_measure(cost_column)))
        .join(CostImport, CostImport.id == CostMonthly.import_id)
        .where(CostImport.superseded_by.is_(None), CostMonthly.month == month.first)
        .group_by(unallocated, CostMonthly.currency)
    )
    total: dict[str, Decimal] = {}
    lost: dict[str, Decimal] = {}
    for is_unallocated, currency, amount in session.execute(query):
        value = _dec(amount)
        total[currency] = total.get(currency, Decimal(0)) + value
        if is_unallocated:
            lost[currency] = lost.get(currency, Decimal(0)) + value
    return total, lost


def _dec(value: object) -> Decimal:
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(str(value))
