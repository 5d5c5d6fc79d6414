"""The ledger's append API, budgets, ``budget_status`` and the forecast."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.errors import NotFound, PreconditionFailed, Unprocessable
from tenantops.finops import budgets, ledger
from tenantops.finops.costs import Month, forecast
from tenantops.finops.importer import import_file
from tenantops.finops.models import LedgerEntry
from tenantops.finops.settings import FinOpsSettings
from tests.conftest import Clock
from tests.finops.focusdata import make_tenant, tagged, write_csv

FIN = Principal("fiona", frozenset({Role.FINANCE}))
OPS = Principal("oli", frozenset({Role.OPS_ENGINEER}))


@pytest.fixture
def blue(db: Database) -> str:
    with db.write() as session:
        return make_tenant(session, "blue", monthly_budget=1000, currency="EUR")


def test_forecast_is_the_burn_rate_over_the_whole_month() -> None:
    jan = Month.parse("2030-01")
    assert jan.days == 31
    ten_days_in = datetime(2030, 1, 11, tzinfo=UTC)
    assert forecast(Decimal(100), jan, ten_days_in) == Decimal("310.00")
    # The first hours count as one day, not as a few minutes.
    assert forecast(Decimal(5), jan, datetime(2030, 1, 1, 1, tzinfo=UTC)) == Decimal("155.00")
    assert forecast(Decimal(100), jan, datetime(2030, 3, 1, tzinfo=UTC)) == Decimal("100.00")
    assert forecast(Decimal(100), jan, datetime(2029, 12, 1, tzinfo=UTC)) == Decimal("0.00")
    assert Month.parse("2028-02").days == 29
    with pytest.raises(Unprocessable, match="2026-10"):
        Month.parse("2030-13")


def test_append_records_the_event_and_its_audit_entry(db: Database, blue: str) -> None:
    with db.write() as session:
        entry = ledger.append(
            session,
            blue,
            "rate_limit",
            actor=OPS,
            ref="run:42",
            data={"policy": "finops-throttle", "rps": 50},
        )
        seq = entry.seq
    with db.read() as session:
        stored = session.get(LedgerEntry, seq)
        audited = session.execute(
            select(AuditEntry).where(AuditEntry.action == "finops.ledger.rate_limit")
        ).scalar_one()
        assert audit.verify(session).ok
    assert stored is not None
    assert (stored.tenant_id, stored.kind, stored.actor, stored.ref) == (
        blue,
        "rate_limit",
        "oli",
        "run:42",
    )
    assert audited.tenant_id == blue
    assert audited.detail["ledger_seq"] == seq
    assert audited.detail["data"] == {"policy": "finops-throttle", "rps": 50}


def test_append_refuses_cost_lines_unknown_kinds_and_tenants(db: Database, blue: str) -> None:
    with db.write() as session:
        with pytest.raises(Unprocessable, match="FOCUS import"):
            ledger.append(session, blue, "cost", actor=OPS)
        with pytest.raises(Unprocessable, match="unknown ledger kind"):
            ledger.append(session, blue, "bribe", actor=OPS)
        with pytest.raises(NotFound):
            ledger.append(session, "no-such-tenant", "note", actor=OPS)
        with pytest.raises(Unprocessable, match="16384"):
            ledger.append(session, blue, "note", actor=OPS, data={"x": "y" * 20_000})


def test_a_failed_append_leaves_neither_row_nor_audit_entry(db: Database, blue: str) -> None:
    def append_then_fail() -> None:
        with db.write() as session:
            ledger.append(session, blue, "alert", actor=OPS, ref="fp-1")
            raise RuntimeError("the caller's transaction fails later")

    with pytest.raises(RuntimeError):
        append_then_fail()
    with db.read() as session:
        assert session.execute(select(LedgerEntry)).first() is None
        assert (
            session.execute(select(AuditEntry).where(AuditEntry.action.like("finops.%"))).first()
            is None
        )


def test_a_tenant_without_a_budget_uses_its_registered_one(db: Database, blue: str) -> None:
    with db.read() as session:
        view = budgets.get_budget(session, "blue")
    assert (view.amount, view.currency, view.version) == (Decimal(1000), "EUR", 0)
    assert view.thresholds == [50, 80, 100, 120]


def test_setting_a_budget_is_versioned_and_written_to_the_ledger(db: Database, blue: str) -> None:
    with db.write() as session:
        first = budgets.set_budget(
            session, principal=FIN, tenant_ref="blue", amount=Decimal("200"), currency="eur"
        )
    with db.write() as session:
        second = budgets.set_budget(
            session,
            principal=FIN,
            tenant_ref=blue,
            amount=Decimal("250.5"),
            currency="EUR",
            thresholds=[90, 50],
            if_match=first.version,
        )
    assert (first.version, second.version) == (1, 2)
    assert second.thresholds == [50, 90]
    with db.write() as session, pytest.raises(PreconditionFailed):
        budgets.set_budget(
            session, principal=FIN, tenant_ref=blue, amount=Decimal(1), currency="EUR", if_match=1
        )
    with db.read() as session:
        rows, _ = ledger.entries(session, tenant_id=blue)
    assert [r.kind for r in rows] == ["budget", "budget"]
    assert rows[0].amount == Decimal("250.50")
    assert rows[0].data is not None
    assert rows[0].data["before"]["amount"] == "200.00"


def test_budget_values_are_checked(db: Database, blue: str) -> None:
    with db.write() as session:
        with pytest.raises(Unprocessable, match="ISO 4217"):
            budgets.set_budget(
                session, principal=FIN, tenant_ref=blue, amount=Decimal(1), currency="XXQ"
            )
        with pytest.raises(Unprocessable, match="negative"):
            budgets.set_budget(
                session, principal=FIN, tenant_ref=blue, amount=Decimal(-1), currency="EUR"
            )
        with pytest.raises(Unprocessable, match="percentages"):
            budgets.set_budget(
                session,
                principal=FIN,
                tenant_ref=blue,
                amount=Decimal(1),
                currency="EUR",
                thresholds=[0],
            )


def test_budget_status_has_cost_forecast_ratio_and_crossed_thresholds(
    db: Database, blue: str, clock: Clock, tmp_path: Path
) -> None:
    clock.now = datetime(2030, 1, 11, tzinfo=UTC)  # ten days of January gone
    rows = [
        tagged("blue", "500", ServiceName="Compute"),
        tagged("blue", "250", ServiceName="Storage"),
        tagged("blue", "100", ServiceName="Network"),
        tagged("blue", "40", BillingCurrency="USD", BillingAccountId="acct-us"),
    ]
    with db.write() as session:
        import_file(
            session,
            path=write_csv(tmp_path / "eur.csv", rows[:3]),
            principal=FIN,
            settings=FinOpsSettings(),
        )
        import_file(
            session,
            path=write_csv(tmp_path / "usd.csv", rows[3:]),
            principal=FIN,
            settings=FinOpsSettings(),
        )
    with db.read() as session:
        status = budgets.budget_status(session, blue)
    assert status.month == "2030-01"
    assert status.cost == Decimal("850.00")
    assert status.forecast == Decimal("2635.00")  # 850 / 10 days x 31
    assert status.budget == Decimal(1000)
    assert status.ratio == Decimal("0.8500")
    assert status.forecast_ratio == Decimal("2.6350")
    assert status.crossed == [50, 80]
    assert status.highest_crossed == 80
    assert status.top_services[0] == ("Compute", Decimal(500))
    assert status.other_currencies == {"USD": Decimal(40)}
    with db.read() as session:
        december = budgets.budget_status(session, blue, "2029-12")
    assert december.cost == 0
    assert december.crossed == []


def test_the_ledger_pages_newest_first(db: Database, blue: str) -> None:
    with db.write() as session:
        for n in range(5):
            ledger.append(session, blue, "note", actor=OPS, ref=f"n{n}")
    with db.read() as session:
        first, cursor = ledger.entries(session, tenant_id=blue, limit=3)
        assert cursor is not None
        rest, end = ledger.entries(session, tenant_id=blue, before=cursor, limit=3)
    assert [e.ref for e in first + rest] == ["n4", "n3", "n2", "n1", "n0"]
    assert end is None


def test_top_services_are_those_of_the_budget_currency_whatever_else_costs_more(
    db: Database, blue: str, clock: Clock, tmp_path: Path
) -> None:
    clock.now = datetime(2030, 1, 11, tzinfo=UTC)
    usd = [
        tagged("blue", "1000", ServiceName=f"US {n}", BillingCurrency="USD", BillingAccountId="us")
        for n in range(6)
    ]
    with db.write() as session:
        import_file(
            session,
            path=write_csv(tmp_path / "eur.csv", [tagged("blue", "10.125", ServiceName="Compute")]),
            principal=FIN,
            settings=FinOpsSettings(),
        )
        import_file(
            session, path=write_csv(tmp_path / "usd.csv", usd), principal=FIN,
            settings=FinOpsSettings(),
        )  # fmt: skip
    with db.read() as session:
        status = budgets.budget_status(session, blue)
    assert status.currency == "EUR"
    assert status.top_services == [("Compute", Decimal("10.125"))]
    assert status.cost == Decimal("10.13")  # half up, as every FinOps figure
