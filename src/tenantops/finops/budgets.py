"""Tenant budgets with thresholds, and ``budget_status`` — the one answer to "how is it going".

A tenant without a finops budget has the ``monthly_budget`` it was registered
with and the default thresholds (``FinOpsSettings.default_thresholds``).
Setting a budget is a change like any other: written with a ledger row of
kind ``budget`` (before and after) and its audit entry in one transaction;
``If-Match`` guards against a lost update.

The ratio compares cost in the budget's currency only; cost billed in other
currencies is reported beside it, never converted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.errors import NotFound, PreconditionFailed, Unprocessable
from tenantops.finops import ledger
from tenantops.finops.costs import Month, cents, crossed, forecast, tenant_month
from tenantops.finops.models import Budget
from tenantops.kit.clock import utcnow
from tenantops.kit.iso4217 import CURRENCY_CODES
from tenantops.tenants import repository as tenants
from tenantops.tenants.models import Tenant

DEFAULT_THRESHOLDS = (50, 80, 100, 120)
RATIO = Decimal("0.0001")


@dataclass(frozen=True)
class BudgetView:
    """A tenant's effective budget; ``version`` 0 means the registry default (no row yet)."""

    tenant_id: str
    tenant_name: str
    amount: Decimal
    currency: str
    thresholds: list[int]
    version: int
    updated_by: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class BudgetStatus:
    """Cost against budget for one tenant and month (what playbooks and dashboards read)."""

    tenant_id: str
    tenant_name: str
    month: str
    currency: str
    cost: Decimal
    forecast: Decimal
    budget: Decimal
    ratio: Decimal | None
    forecast_ratio: Decimal | None
    thresholds: list[int]
    crossed: list[int]
    top_services: list[tuple[str, Decimal]] = field(default_factory=list)
    other_currencies: dict[str, Decimal] = field(default_factory=dict)

    @property
    def highest_crossed(self) -> int | None:
        return self.crossed[-1] if self.crossed else None


def _tenant(session: Session, ref: str, *, for_update: bool = False) -> Tenant:
    tenant = tenants.get(session, ref, for_update=for_update)
    if tenant is None:
        raise NotFound(f"no tenant {ref!r}")
    return tenant


def view(
    session: Session, tenant: Tenant, *, default_thresholds: list[int] | None = None
) -> BudgetView:
    row = session.get(Budget, tenant.id)
    if row is None:
        return BudgetView(
            tenant_id=tenant.id,
            tenant_name=tenant.name,
            amount=Decimal(tenant.monthly_budget),
            currency=tenant.currency,
            thresholds=list(default_thresholds or DEFAULT_THRESHOLDS),
            version=0,
        )
    return BudgetView(
        tenant_id=tenant.id,
        tenant_name=tenant.name,
        amount=Decimal(row.amount),
        currency=row.currency,
        thresholds=list(row.thresholds),
        version=row.version,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


def get_budget(
    session: Session, tenant_ref: str, *, default_thresholds: list[int] | None = None
) -> BudgetView:
    """The budget of a tenant (by id or name)."""
    return view(session, _tenant(session, tenant_ref), default_thresholds=default_thresholds)


def check_thresholds(thresholds: list[int]) -> list[int]:
    if not thresholds or any(t <= 0 or t > 1000 for t in thresholds):
        raise Unprocessable("thresholds are percentages from 1 to 1000", param="thresholds")
    return sorted(set(thresholds))


def set_budget(
    session: Session,
    *,
    principal: Principal,
    tenant_ref: str,
    amount: Decimal,
    currency: str,
    thresholds: list[int] | None = None,
    if_match: int | None = None,
) -> BudgetView:
    """Set a tenant's monthly budget; recorded in the ledger and the audit trail."""
    if amount < 0:
        raise Unprocessable("a budget cannot be negative", param="amount")
    currency = currency.upper()
    if currency not in CURRENCY_CODES:
        raise Unprocessable(f"{currency!r} is not an ISO 4217 currency code", param="currency")
    levels = check_thresholds(list(thresholds or DEFAULT_THRESHOLDS))
    # The tenant row, not the budget row, is the lock: before the first budget there is
    # no budget row to lock, and two first writers would both insert.
    tenant = _tenant(session, tenant_ref, for_update=True)
    row = session.execute(
        select(Budget).where(Budget.tenant_id == tenant.id).with_for_update()
    ).scalar_one_or_none()
    before = view(session, tenant)
    if if_match is not None and before.version != if_match:
        raise PreconditionFailed(
            f"the budget of {tenant.name} is at version {before.version}, not {if_match}; "
            "read it again and retry",
            current_version=before.version,
        )
    now = utcnow()
    amount = amount.quantize(Decimal("0.01"), ROUND_HALF_UP)
    if row is None:
        row = Budget(
            tenant_id=tenant.id,
            amount=amount,
            currency=currency,
            thresholds=levels,
            updated_by=principal.subject,
            updated_at=now,
        )
        session.add(row)
    else:
        row.amount, row.currency, row.thresholds = amount, currency, levels
        row.updated_by, row.updated_at = principal.subject, now
    session.flush()
    ledger.append(
        session,
        tenant.id,
        ledger.LedgerKind.BUDGET,
        actor=principal,
        ref=f"budget:v{row.version}",
        amount=amount,
        currency=currency,
        data={
            "before": {
                "amount": str(before.amount),
                "currency": before.currency,
                "thresholds": before.thresholds,
            },
            "after": {"amount": str(amount), "currency": currency, "thresholds": levels},
        },
    )
    return view(session, tenant)


def ratio_of(cost: Decimal, budget: Decimal) -> Decimal | None:
    return (cost / budget).quantize(RATIO, ROUND_HALF_UP) if budget > 0 else None


def budget_status(
    session: Session,
    tenant_id: str,
    month: Month | str | None = None,
    *,
    cost_column: str = "EffectiveCost",
    default_thresholds: list[int] | None = None,
    now: datetime | None = None,
) -> BudgetStatus:
    """Cost, forecast, budget, ratio and crossed thresholds of a tenant for ``month``.

    ``month`` is a ``Month``, ``YYYY-MM`` or None for the current month (the
    clock). Thresholds are crossed by the month-to-date cost, not the forecast.
    """
    period = month if isinstance(month, Month) else Month.parse(month, now=now)
    tenant = _tenant(session, tenant_id)
    budget = view(session, tenant, default_thresholds=default_thresholds)
    spent = tenant_month(
        session, tenant.id, period, cost_column=cost_column, currency=budget.currency
    )
    cost = spent.by_currency.get(budget.currency, Decimal(0))
    projected = forecast(cost, period, now)
    reached = crossed(cost, budget.amount, budget.thresholds)
    return BudgetStatus(
        tenant_id=tenant.id,
        tenant_name=tenant.name,
        month=period.label,
        currency=budget.currency,
        cost=cents(cost),
        forecast=projected,
        budget=budget.amount,
        ratio=ratio_of(cost, budget.amount),
        forecast_ratio=ratio_of(projected, budget.amount),
        thresholds=budget.thresholds,
        crossed=reached,
        top_services=[(s, t) for s, c, t in spent.services if c == budget.currency],
        other_currencies={c: v for c, v in spent.by_currency.items() if c != budget.currency},
    )
