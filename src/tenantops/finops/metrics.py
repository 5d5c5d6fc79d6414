"""``/metrics``: each tenant's month-to-date cost, forecast, budget and ratio, read at scrape time.

Register with ``registry.register(CostCollector(database, settings.finops))``.
One scrape runs three queries: cost per tenant and currency of the current
month (``cost_daily`` of current imports, index on day), the budgets, and
tenant names. Tenants that are archived or rejected are left out.

The shipped rules (``deploy/prometheus/tenantops-finops.rules.yml``) alert on
``tenantops_tenant_budget_ratio``.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select

from tenantops.db import Database
from tenantops.finops.costs import Month, forecast, tenants_month
from tenantops.finops.models import Budget
from tenantops.finops.settings import FinOpsSettings
from tenantops.tenants.models import Tenant

log = structlog.get_logger("tenantops.finops")

GONE = ("archived", "rejected")


class CostCollector(Collector):
    """Per-tenant cost gauges for the current month (the project clock's)."""

    def __init__(self, db: Database, settings: FinOpsSettings | None = None) -> None:
        self.db = db
        self.settings = settings or FinOpsSettings()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        month = Month.parse(None)
        try:
            with self.db.read() as session:
                spent = tenants_month(session, None, month, cost_column=self.settings.cost_column)
                budgets = {b.tenant_id: b for b in session.execute(select(Budget)).scalars()}
                tenants = session.execute(
                    select(Tenant.id, Tenant.name, Tenant.monthly_budget, Tenant.currency).where(
                        Tenant.state.not_in(GONE)
                    )
                ).all()
        except Exception:  # a scrape must answer even when the database does not
            log.warning("could not read tenant costs", exc_info=True)
            return
        cost = GaugeMetricFamily(
            "tenantops_tenant_cost_month_to_date",
            "Cost of the tenant in the current month so far (FOCUS cost column per settings)",
            labels=["tenant", "currency"],
        )
        projected = GaugeMetricFamily(
            "tenantops_tenant_cost_forecast",
            "Forecast cost at month end (month-to-date burn rate)",
            labels=["tenant", "currency"],
        )
        budget = GaugeMetricFamily(
            "tenantops_tenant_budget", "Monthly budget of the tenant", labels=["tenant", "currency"]
        )
        ratio = GaugeMetricFamily(
            "tenantops_tenant_budget_ratio",
            "Month-to-date cost / budget (1 = budget used up)",
            labels=["tenant"],
        )
        forecast_ratio = GaugeMetricFamily(
            "tenantops_tenant_budget_forecast_ratio",
            "Forecast month-end cost / budget",
            labels=["tenant"],
        )
        for tenant_id, name, registered, registered_currency in tenants:
            row = budgets.get(tenant_id)
            amount = Decimal(row.amount) if row else Decimal(registered)
            currency = row.currency if row else registered_currency
            by_currency = spent.get(tenant_id, {})
            mtd = by_currency.get(currency, Decimal(0))
            end = forecast(mtd, month)
            for other, value in by_currency.items():
                cost.add_metric([name, other], float(value))
            if currency not in by_currency:
                cost.add_metric([name, currency], 0.0)
            projected.add_metric([name, currency], float(end))
            budget.add_metric([name, currency], float(amount))
            if amount > 0:
                ratio.add_metric([name], float(mtd / amount))
                forecast_ratio.add_metric([name], float(end / amount))
        yield cost
        yield projected
        yield budget
        yield ratio
        yield forecast_ratio
