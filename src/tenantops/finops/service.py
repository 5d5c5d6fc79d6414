"""The finops service API: what routes, the CLI, playbooks and the dashboard call.

Public functions (each takes the caller's ``Session``; writes run in the
caller's transaction and are audited there):

- ``importer.import_file(session, path=, principal=, settings=)`` — a FOCUS file.
- ``list_imports(session, cursor=, limit=)`` — newest first.
- ``budgets.budget_status(session, tenant_id, month)`` -> ``BudgetStatus``.
- ``budgets.set_budget`` / ``budgets.get_budget``.
- ``ledger.append(session, tenant_id, kind, actor=, ref=, amount=, data=)``.
- ``tenant_cost(session, principal=, ref=, month=, settings=)`` -> ``TenantCost``.
- ``cost_overview(session, month=, settings=, cursor=, limit=)`` -> ``CostOverview``.
- ``tenant_ledger(session, principal=, ref=, before=, kinds=, limit=)`` -> ``LedgerPage``.

Tenant-scoped callers (tenant owners) reach only their own tenant: any other
is a 404, as in the tenant registry.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.finops import budgets, ledger
from tenantops.finops.budgets import ratio_of
from tenantops.finops.costs import (
    Month,
    cents,
    crossed,
    forecast,
    month_totals,
    tenant_month,
    tenants_month,
)
from tenantops.finops.importer import ImportResult
from tenantops.finops.models import Budget, CostImport
from tenantops.finops.schemas import (
    BudgetRead,
    CostOverview,
    CostRow,
    DayCost,
    ImportPage,
    ImportRead,
    LedgerEntryRead,
    LedgerPage,
    ServiceCost,
    TenantCost,
)
from tenantops.finops.settings import FinOpsSettings
from tenantops.kit.cursor import decode_cursor, encode_cursor
from tenantops.tenants import repository as tenant_repository
from tenantops.tenants import service as tenants
from tenantops.tenants.models import Tenant


def import_read(result: ImportResult) -> ImportRead:
    read = ImportRead.model_validate(result.record)
    return read.model_copy(update={"duplicate": result.duplicate})


def list_imports(session: Session, *, cursor: str | None, limit: int) -> ImportPage:
    """Imports, newest first (keyset on the time-ordered id)."""
    query = select(CostImport).order_by(CostImport.id.desc()).limit(limit + 1)
    if cursor:
        query = query.where(CostImport.id < decode_cursor(cursor))
    rows = list(session.execute(query).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return ImportPage(
        items=[ImportRead.model_validate(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )


def visible_tenant(session: Session, principal: Principal, ref: str) -> Tenant:
    """A tenant the caller may see (404 otherwise, even for one that exists)."""
    return tenants.get_tenant(session, principal=principal, ref=ref)


def tenant_cost(
    session: Session, *, principal: Principal, ref: str, month: str | None, settings: FinOpsSettings
) -> TenantCost:
    tenant = visible_tenant(session, principal, ref)
    period = Month.parse(month)
    status = budgets.budget_status(
        session,
        tenant.id,
        period,
        cost_column=settings.cost_column,
        default_thresholds=settings.default_thresholds,
    )
    spent = tenant_month(session, tenant.id, period, cost_column=settings.cost_column)
    return TenantCost(
        tenant_id=status.tenant_id,
        tenant_name=status.tenant_name,
        month=status.month,
        currency=status.currency,
        cost=status.cost,
        forecast=status.forecast,
        budget=status.budget,
        ratio=status.ratio,
        forecast_ratio=status.forecast_ratio,
        thresholds=status.thresholds,
        crossed=status.crossed,
        top_services=[ServiceCost(service=s, cost=cents(c)) for s, c in status.top_services],
        other_currencies=status.other_currencies,
        days=[DayCost(day=d, currency=c, cost=v) for d, c, v in spent.days],
    )


def cost_overview(
    session: Session,
    *,
    month: str | None,
    settings: FinOpsSettings,
    cursor: str | None,
    limit: int,
) -> CostOverview:
    """One page of tenants (the registry's order) with their month, plus the month's totals."""
    period = Month.parse(month)
    after = decode_cursor(cursor) if cursor else None
    page, next_cursor = tenant_repository.list_page(
        session, tenant_repository.TenantFilter(), after_id=after, limit=limit
    )
    ids = [t.id for t in page]
    spent = tenants_month(session, ids, period, cost_column=settings.cost_column)
    rows = {
        b.tenant_id: b
        for b in session.execute(select(Budget).where(Budget.tenant_id.in_(ids))).scalars()
    }
    items = []
    for tenant in page:
        row = rows.get(tenant.id)
        amount = Decimal(row.amount) if row else Decimal(tenant.monthly_budget)
        currency = row.currency if row else tenant.currency
        levels = list(row.thresholds) if row else list(settings.default_thresholds)
        by_currency = spent.get(tenant.id, {})
        cost = by_currency.get(currency, Decimal(0))
        reached = crossed(cost, amount, levels)
        items.append(
            CostRow(
                tenant_id=tenant.id,
                tenant_name=tenant.name,
                currency=currency,
                cost=cents(cost),
                forecast=forecast(cost, period),
                budget=amount,
                ratio=ratio_of(cost, amount),
                crossed=reached[-1] if reached else None,
                other_currencies={c: v for c, v in by_currency.items() if c != currency},
            )
        )
    total, unallocated = month_totals(session, period, cost_column=settings.cost_column)
    return CostOverview(
        month=period.label,
        items=items,
        next_cursor=next_cursor,
        total=total,
        unallocated=unallocated,
    )


def tenant_ledger(
    session: Session,
    *,
    principal: Principal,
    ref: str,
    before: int | None,
    kinds: list[str] | None,
    limit: int,
) -> LedgerPage:
    tenant = visible_tenant(session, principal, ref)
    rows, next_seq = ledger.entries(
        session, tenant_id=tenant.id, before=before, kinds=kinds, limit=limit
    )
    return LedgerPage(
        items=[LedgerEntryRead.model_validate(r) for r in rows],
        next_cursor=str(next_seq) if next_seq is not None else None,
    )


def budget_read(view: budgets.BudgetView) -> BudgetRead:
    return BudgetRead(
        tenant_id=view.tenant_id,
        tenant_name=view.tenant_name,
        amount=view.amount,
        currency=view.currency,
        thresholds=view.thresholds,
        version=view.version,
        updated_by=view.updated_by,
        updated_at=view.updated_at,
    )


def get_budget(
    session: Session, *, principal: Principal, ref: str, settings: FinOpsSettings
) -> BudgetRead:
    tenant = visible_tenant(session, principal, ref)
    return budget_read(
        budgets.view(session, tenant, default_thresholds=settings.default_thresholds)
    )


def set_budget(
    session: Session,
    *,
    principal: Principal,
    ref: str,
    amount: Decimal,
    currency: str | None,
    thresholds: list[int] | None,
    if_match: int | None,
    settings: FinOpsSettings,
) -> BudgetRead:
    tenant = visible_tenant(session, principal, ref)
    return budget_read(
        budgets.set_budget(
            session,
            principal=principal,
            tenant_ref=tenant.id,
            amount=amount,
            currency=currency or tenant.currency,
            thresholds=thresholds or settings.default_thresholds,
            if_match=if_match,
        )
    )
