"""The cost collector: what Prometheus scrapes, read from the database."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.finops import budgets
from tenantops.finops.importer import import_file
from tenantops.finops.metrics import CostCollector
from tenantops.finops.settings import FinOpsSettings
from tests.conftest import Clock
from tests.finops.focusdata import make_tenant, tagged, write_csv

FIN = Principal("fiona", frozenset({Role.FINANCE}))


def test_each_tenant_has_cost_budget_ratio_and_forecast(
    db: Database, clock: Clock, tmp_path: Path
) -> None:
    clock.now = datetime(2030, 1, 11, tzinfo=UTC)
    with db.write() as session:
        make_tenant(session, "blue", monthly_budget=100, currency="EUR")
        make_tenant(session, "green", monthly_budget=50, currency="EUR")
        budgets.set_budget(
            session, principal=FIN, tenant_ref="green", amount=Decimal(200), currency="EUR"
        )
        import_file(
            session,
            path=write_csv(tmp_path / "jan.csv", [tagged("blue", "120"), tagged("green", "50")]),
            principal=FIN,
            settings=FinOpsSettings(),
        )
    registry = CollectorRegistry()
    registry.register(CostCollector(db, FinOpsSettings()))
    value = registry.get_sample_value
    assert (
        value("tenantops_tenant_cost_month_to_date", {"tenant": "blue", "currency": "EUR"}) == 120
    )
    assert value("tenantops_tenant_budget", {"tenant": "blue", "currency": "EUR"}) == 100
    assert value("tenantops_tenant_budget_ratio", {"tenant": "blue"}) == 1.2
    assert value("tenantops_tenant_cost_forecast", {"tenant": "blue", "currency": "EUR"}) == 372
    assert value("tenantops_tenant_budget", {"tenant": "green", "currency": "EUR"}) == 200
    assert value("tenantops_tenant_budget_ratio", {"tenant": "green"}) == 0.25
    text = generate_latest(registry).decode()
    assert "# TYPE tenantops_tenant_budget_ratio gauge" in text


def test_a_new_month_starts_at_zero(db: Database, clock: Clock, tmp_path: Path) -> None:
    with db.write() as session:
        make_tenant(session, "blue", monthly_budget=100, currency="EUR")
        import_file(
            session,
            path=write_csv(tmp_path / "jan.csv", [tagged("blue", "120")]),
            principal=FIN,
            settings=FinOpsSettings(),
        )
    clock.now = datetime(2030, 2, 3, tzinfo=UTC)
    registry = CollectorRegistry()
    registry.register(CostCollector(db))
    assert registry.get_sample_value("tenantops_tenant_budget_ratio", {"tenant": "blue"}) == 0


def test_a_scrape_answers_when_the_database_does_not(tmp_path: Path) -> None:
    broken = Database(f"sqlite:///{tmp_path / 'missing' / 'nowhere.db'}")
    registry = CollectorRegistry()
    registry.register(CostCollector(broken))
    assert registry.get_sample_value("tenantops_tenant_budget_ratio", {"tenant": "x"}) is None
    broken.dispose()
