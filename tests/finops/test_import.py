"""Importing FOCUS files into the ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.finops.costs import Month, tenants_month
from tenantops.finops.importer import ImportRejected, InvalidCostFile, import_file
from tenantops.finops.models import CostDaily, CostImport, LedgerEntry
from tenantops.finops.settings import AllocationRule, FinOpsSettings
from tests.finops.focusdata import line, make_tenant, tagged, write_csv, write_parquet

FIN = Principal("fiona", frozenset({Role.FINANCE}))
SETTINGS = FinOpsSettings()
JAN = Month.parse("2030-01")


def _import(db: Database, path: Path, settings: FinOpsSettings = SETTINGS) -> CostImport:
    with db.write() as session:
        return import_file(session, path=path, principal=FIN, settings=settings).record


def _count(db: Database, model: type) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def tenants(db: Database) -> dict[str, str]:
    with db.write() as session:
        return {name: make_tenant(session, name) for name in ("blue", "green")}


def test_lines_are_allocated_by_tag_then_namespace_and_the_rest_kept(
    db: Database, tenants: dict[str, str], tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "jan.csv",
        [
            tagged("blue", "10.50"),
            tagged(tenants["green"], "1.25"),  # a tenant named by id
            line(ResourceId="/subscriptions/s/namespaces/green/pods/web", EffectiveCost="2"),
            tagged("nobody", "4"),
            line(EffectiveCost="0.000000000001"),
        ],
    )
    record = _import(db, path)
    assert (record.rows, record.allocated_rows, record.unallocated_rows) == (5, 3, 2)
    assert record.summary["by_rule"] == {
        "tag:tenant": 2,
        "resource:.*/namespaces/(?P<tenant>[a-z0-9-]+)(/.*)?$": 1,
    }
    assert record.summary["unknown_tenants"] == [{"ref": "nobody", "values": 1}]
    assert record.unallocated_cost == Decimal("4.000000000001")
    with db.read() as session:
        lines = session.execute(select(LedgerEntry).order_by(LedgerEntry.source_line)).scalars()
        by_line = {e.source_line: e for e in lines}
        totals = tenants_month(session, None, JAN, cost_column="EffectiveCost")
    assert len(by_line) == 5
    assert by_line[2].tenant_id == tenants["blue"]
    assert by_line[2].effective_cost == Decimal("10.5")
    assert by_line[4].tenant_id == tenants["green"]
    assert by_line[5].tenant_id is None
    assert by_line[6].effective_cost == Decimal("0.000000000001")
    assert all(e.kind == "cost" and e.import_id == record.id for e in by_line.values())
    assert totals[tenants["blue"]] == {"EUR": Decimal("10.5")}
    assert totals[tenants["green"]] == {"EUR": Decimal("3.25")}
    assert totals[None] == {"EUR": Decimal("4.000000000001")}


def test_a_file_with_one_bad_line_imports_nothing(
    db: Database, tenants: dict[str, str], tmp_path: Path
) -> None:
    rows = [tagged("blue") for _ in range(70_000)]
    rows[69_990] = tagged(
        "blue", BilledCost="ten"
    )  # in the second batch, after the first was written
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(ImportRejected) as caught:
        _import(db, path)
    assert caught.value.extra["error_count"] == 1
    assert caught.value.extra["errors"] == [
        {"line": 69_992, "column": "BilledCost", "message": "'ten' is not a decimal number"}
    ]
    assert _count(db, LedgerEntry) == 0
    assert _count(db, CostImport) == 0
    assert _count(db, CostDaily) == 0


def test_missing_columns_are_one_error(db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", [line()], columns=["BilledCost", "Tags"])
    with pytest.raises(InvalidCostFile) as caught:
        _import(db, path)
    assert "BillingAccountId" in caught.value.extra["missing_columns"]
    assert "missing FOCUS columns" in str(caught.value)


def test_a_header_without_lines_is_refused(db: Database, tmp_path: Path) -> None:
    with pytest.raises(InvalidCostFile, match="no cost lines"):
        _import(db, write_csv(tmp_path / "empty.csv", []))


def test_parquet_with_native_types_imports_like_csv(
    db: Database, tenants: dict[str, str], tmp_path: Path
) -> None:
    path = write_parquet(tmp_path / "jan.parquet", [tagged("blue", "3.5"), line(EffectiveCost="1")])
    record = _import(db, path)
    assert record.format == "parquet"
    assert (record.rows, record.allocated_rows) == (2, 1)
    assert record.effective_cost == Decimal("4.5")


def test_the_same_file_again_returns_the_earlier_import(
    db: Database, tenants: dict[str, str], tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "jan.csv", [tagged("blue")])
    first = _import(db, path)
    with db.write() as session:
        again = import_file(session, path=path, principal=FIN, settings=SETTINGS)
    assert again.duplicate
    assert again.record.id == first.id
    assert _count(db, LedgerEntry) == 1


def test_a_new_file_for_the_period_supersedes_the_old_one(
    db: Database, tenants: dict[str, str], tmp_path: Path
) -> None:
    first = _import(db, write_csv(tmp_path / "v1.csv", [tagged("blue", "10")]))
    second = _import(db, write_csv(tmp_path / "v2.csv", [tagged("blue", "7"), tagged("blue", "1")]))
    other = _import(
        db, write_csv(tmp_path / "acct2.csv", [tagged("blue", "100", BillingAccountId="acct-2")])
    )
    with db.read() as session:
        old = session.get(CostImport, first.id)
        totals = tenants_month(session, None, JAN, cost_column="EffectiveCost")
    assert old is not None
    assert old.superseded_by == second.id
    assert second.summary["supersedes"] == [first.id]
    assert other.summary["supersedes"] == []
    # Append-only: the superseded lines stay, the queries skip them.
    assert _count(db, LedgerEntry) == 4
    assert totals[tenants["blue"]] == {"EUR": Decimal("108")}


def test_an_import_is_audited_once_with_its_totals(
    db: Database, tenants: dict[str, str], tmp_path: Path
) -> None:
    record = _import(db, write_csv(tmp_path / "jan.csv", [tagged("blue")] * 50))
    with db.read() as session:
        entries = (
            session.execute(
                select(AuditEntry).where(AuditEntry.action == "finops.import.completed")
            )
            .scalars()
            .all()
        )
        assert audit.verify(session).ok
    assert len(entries) == 1
    assert entries[0].actor == "fiona"
    assert entries[0].detail["import_id"] == record.id
    assert entries[0].detail["rows"] == 50


def test_rules_from_settings_decide_the_allocation(
    db: Database, tenants: dict[str, str], tmp_path: Path
) -> None:
    settings = FinOpsSettings(
        allocation=[AllocationRule(kind="resource", pattern=r"^proj-(?P<tenant>[a-z]+)/")]
    )
    record = _import(
        db,
        write_csv(tmp_path / "f.csv", [tagged("blue", ResourceId="proj-green/vm-1")]),
        settings,
    )
    with db.read() as session:
        entry = session.execute(select(LedgerEntry)).scalar_one()
    assert entry.tenant_id == tenants["green"]
    assert record.summary["by_rule"] == {"resource:^proj-(?P<tenant>[a-z]+)/": 1}


def test_cost_counts_in_the_month_it_was_charged(
    db: Database, tenants: dict[str, str], tmp_path: Path
) -> None:
    late = {"ChargePeriodStart": "2030-02-01T00:00:00Z", "ChargePeriodEnd": "2030-02-01T01:00:00Z"}
    _import(db, write_csv(tmp_path / "jan.csv", [tagged("blue", "5"), tagged("blue", "2", **late)]))
    with db.read() as session:
        january = tenants_month(session, [tenants["blue"]], JAN, cost_column="EffectiveCost")
        february = tenants_month(session, None, Month.parse("2030-02"), cost_column="BilledCost")
    assert january == {tenants["blue"]: {"EUR": Decimal(5)}}
    assert february == {tenants["blue"]: {"EUR": Decimal(2)}}


def test_concurrent_imports_of_one_period_leave_one_current(
    db: Database, tenants: dict[str, str], tmp_path: Path
) -> None:
    import threading

    paths = [
        write_csv(tmp_path / f"v{n}.csv", [tagged("blue", str(n + 1))] * (n + 1)) for n in range(3)
    ]
    errors: list[BaseException] = []

    def run(path: Path) -> None:
        try:
            _import(db, path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read() as session:
        imports = session.execute(select(CostImport)).scalars().all()
    assert len(imports) == 3
    assert len([i for i in imports if i.superseded_by is None]) == 1
