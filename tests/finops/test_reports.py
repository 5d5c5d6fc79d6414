"""Cost reports from the database: figures, files, API formats and scoping, the CLI."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tenantops.auth.principal import Principal, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.finops import budgets, ledger
from tenantops.finops.costs import Month
from tenantops.finops.importer import import_file
from tenantops.finops.report_render import Scope
from tenantops.finops.reports import build_report, previous_month, write_report
from tenantops.finops.settings import FinOpsSettings
from tests.conftest import Clock
from tests.finops.focusdata import make_tenant, tagged, write_csv

FIN = Principal("fiona", frozenset({Role.FINANCE}))
JAN = Month.parse("2030-01")


def day(n: int, month: str = "2030-01") -> dict[str, str]:
    start = f"{month}-{n:02d}T00:00:00Z"
    end = f"{month}-{n + 1:02d}T00:00:00Z"
    return {"ChargePeriodStart": start, "ChargePeriodEnd": end}


def december(**overrides: str) -> dict[str, str]:
    return {
        "BillingPeriodStart": "2029-12-01T00:00:00Z",
        "BillingPeriodEnd": "2030-01-01T00:00:00Z",
        "ChargePeriodStart": "2029-12-05T00:00:00Z",
        "ChargePeriodEnd": "2029-12-06T00:00:00Z",
        **overrides,
    }


@pytest.fixture
def seeded(db: Database, clock: Clock, tmp_path: Path) -> dict[str, str]:
    """blue (budget 1000 EUR, over 80 %), green (no cost), red (no budget, cost)."""
    clock.now = datetime(2030, 1, 11, tzinfo=UTC)
    with db.write() as session:
        ids = {
            "blue": make_tenant(session, "blue", monthly_budget=1000, currency="EUR"),
            "green": make_tenant(session, "green", monthly_budget=500, currency="EUR"),
            "red": make_tenant(session, "red", monthly_budget=0, currency="EUR"),
            "idle": make_tenant(session, "idle", monthly_budget=0, currency="EUR"),
        }
    rows = [
        tagged("blue", "500", ServiceName="Compute", **day(2)),
        tagged("blue", "250", ServiceName="Storage", **day(3)),
        tagged("blue", "100", ServiceName="Network", **day(3)),
        tagged("red", "30", ServiceName="Compute", **day(4)),
        tagged("blue", "40", BillingCurrency="USD", BillingAccountId="acct-us"),
    ]
    with db.write() as session:
        settings = FinOpsSettings()
        import_file(
            session,
            path=write_csv(tmp_path / "eur.csv", rows[:4]),
            principal=FIN,
            settings=settings,
        )
        import_file(
            session,
            path=write_csv(tmp_path / "usd.csv", rows[4:]),
            principal=FIN,
            settings=settings,
        )
        import_file(
            session,
            path=write_csv(tmp_path / "dec.csv", [tagged("blue", "700", **december())]),
            principal=FIN,
            settings=settings,
        )
        ledger.append(
            session, ids["blue"], "alert", actor=FIN, ref="fp-1", data={"summary": "80 % of budget"}
        )
    return ids


def test_the_report_has_the_figures_of_budget_status(db: Database, seeded: dict[str, str]) -> None:
    now = datetime(2030, 1, 11, tzinfo=UTC)
    with db.read() as session:
        report = build_report(session, month=JAN, tenant_id=None, now=now)
        status = budgets.budget_status(session, seeded["blue"], JAN, now=now)
    assert report.scope is Scope.ALL
    assert report.currency == "EUR"
    by_name = {t.name: t for t in report.tenants}
    # idle has neither cost nor budget: left out.
    assert set(by_name) == {"blue", "green", "red"}
    blue = by_name["blue"]
    assert blue.cost_mtd == status.cost == Decimal("850.00")
    assert blue.forecast == status.forecast
    assert blue.budget == status.budget
    assert blue.ratio_exact == status.ratio
    assert list(blue.thresholds_crossed) == status.crossed == [50, 80]
    assert list(blue.top_services) == [(s, c) for s, c in status.top_services]
    assert [d.day for d, _ in blue.daily] == [2, 3]
    assert dict(blue.daily)[JAN.first.replace(day=3)] == Decimal(350)
    assert list(blue.previous_months) == [("2029-12", Decimal(700))]
    assert [a.kind for a in blue.actions] == ["alert"]
    assert "80 % of budget" in blue.actions[0].summary
    assert by_name["red"].budget is None
    assert by_name["green"].cost_mtd == 0
    assert report.total_cost == Decimal("880.00")


def test_a_month_without_cost_is_an_empty_report(db: Database, seeded: dict[str, str]) -> None:
    with db.read() as session:
        report = build_report(session, month=Month.parse("2029-06"), tenant_id=None)
    assert not report.has_cost_data
    assert report.total_cost == 0


def test_write_report_writes_every_format_and_rewrites_the_same_bytes(
    db: Database, seeded: dict[str, str], settings: Settings
) -> None:
    now = datetime(2030, 2, 1, 6, tzinfo=UTC)
    with db.read() as session:
        first = write_report(settings, session, "2030-01", now=now)
        again = write_report(settings, session, JAN, now=now)
        one = write_report(settings, session, JAN, tenant_id="blue", formats=("csv",), now=now)
    folder = settings.data_dir / "reports" / "2030-01"
    assert first.paths == {
        "html": folder / "cost-report-2030-01-all.html",
        "csv": folder / "cost-report-2030-01-all.csv",
        "pdf": folder / "cost-report-2030-01-all.pdf",
    }
    assert first.sha256 == again.sha256
    for fmt, path in first.paths.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == first.sha256[fmt]
    assert first.paths["pdf"].read_bytes().startswith(b"%PDF")
    assert one.paths == {"csv": folder / f"cost-report-2030-01-{seeded['blue']}.csv"}
    assert one.report.scope is Scope.TENANT
    assert one.total == Decimal("850.00")


def test_the_default_month_is_the_previous_one() -> None:
    assert previous_month(datetime(2030, 1, 3, tzinfo=UTC)).label == "2029-12"
    assert previous_month(datetime(2030, 3, 31, tzinfo=UTC)).label == "2030-02"
