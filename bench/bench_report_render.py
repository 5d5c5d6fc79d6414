"""Cost report rendering time for a large all-tenant month, in HTML, CSV and PDF.

Builds ``--tenants`` tenants (30 days of costs, 6 previous months, 5 services,
two actions each; one in four over budget) in memory, then renders each format
once and prints wall time and output size. The model build is timed too, since
validation runs there. No database: rendering is pure.

    .venv/bin/python bench/bench_report_render.py --tenants 10000
    .venv/bin/python bench/bench_report_render.py --tenants 10000 --unicode-font

``--assemble sqlite|postgres`` times ``reports.build_report`` instead: the
same month read from a database seeded with ``--tenants`` tenants × 30 days ×
2 services (``cost_daily``, ``cost_monthly`` for this and 6 previous months),
one ledger cost line per daily row and two actions per tenant in
``tenant_ledger``; then one single-tenant report::

    .venv/bin/python bench/bench_report_render.py --tenants 10000 --assemble sqlite
    .venv/bin/python bench/bench_report_render.py --tenants 10000 --assemble postgres
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from bench_finops import seed_tenants
from sqlalchemy import insert
from stores import make_store

from tenantops.db import Database
from tenantops.finops.costs import Month
from tenantops.finops.models import CostDaily, CostImport, CostMonthly, LedgerEntry
from tenantops.finops.report_render import (
    Action,
    CostReport,
    Scope,
    TenantCost,
    find_unicode_font,
    render_csv,
    render_html,
    render_pdf,
)
from tenantops.finops.reports import build_report
from tenantops.migrations import upgrade


def build(tenants: int) -> CostReport:
    out = []
    for i in range(tenants):
        day_cost = Decimal(10 + i % 50) + Decimal(i % 100) / 100
        daily = [(date(2026, 10, d), day_cost) for d in range(1, 31)]
        cost = day_cost * 30
        over = i % 4 == 0
        budget = cost * (Decimal("0.8") if over else Decimal("1.25"))
        out.append(
            TenantCost(
                tenant_id=f"tn-{i:05d}",
                name=f"Tenant {i} Zürich-Ωmega",
                cost_mtd=cost,
                forecast=day_cost * 31,
                budget=budget.quantize(Decimal("0.01")),
                thresholds_crossed=(50, 80, 100) if over else (50, 80),
                daily=daily,
                previous_months=[(f"2026-{m:02d}", cost - m) for m in range(4, 10)],
                top_services=[(f"service-{s}", cost / (s + 2)) for s in range(5)],
                actions=[
                    Action(datetime(2026, 10, 12, 8, tzinfo=UTC), "alert", "80 % of budget"),
                    Action(datetime(2026, 10, 20, 9, tzinfo=UTC), "follow_up", "Review due"),
                ],
            )
        )
    return CostReport(
        month="2026-10",
        generated_at=datetime(2026, 10, 31, 6, tzinfo=UTC),
        currency="EUR",
        scope=Scope.ALL,
        tenants=out,
    )


def seed(db: Database, ids: list[str]) -> None:
    """Cost rows straight into the tables an import fills: setup, not what is measured."""
    import_id = str(uuid.uuid4())
    at = datetime(2026, 10, 31, tzinfo=UTC)
    with db.write() as session:
        session.add(
            CostImport(
                id=import_id,
                sha256="0" * 64,
                filename="seed",
                format="csv",
                billing_account_id="acct",
                billing_period_start=datetime(2026, 10, 1, tzinfo=UTC),
                billing_period_end=datetime(2026, 11, 1, tzinfo=UTC),
                currency="EUR",
                rows=0,
                allocated_rows=0,
                unallocated_rows=0,
                billed_cost=Decimal(0),
                effective_cost=Decimal(0),
                unallocated_cost=Decimal(0),
                summary={},
                imported_by="bench",
                imported_at=at,
            )
        )
        daily: list[dict[str, object]] = []
        lines: list[dict[str, object]] = []
        monthly: list[dict[str, object]] = []
        for n, tenant_id in enumerate(ids):
            total = Decimal(0)
            for d in range(30):
                day = date(2026, 10, 1) + timedelta(days=d)
                for service in ("Compute", "Storage"):
                    value = Decimal((n * 31 + d) % 500) / 10
                    total += value
                    daily.append(
                        {
                            "import_id": import_id,
                            "tenant_id": tenant_id,
                            "day": day,
                            "service_name": service,
                            "currency": "EUR",
                            "billed_cost": value,
                            "effective_cost": value,
                            "lines": 1,
                        }
                    )
                    lines.append(
                        {
                            "tenant_id": tenant_id,
                            "kind": "cost",
                            "at": at,
                            "charge_day": day,
                            "service_name": service,
                            "billed_cost": value,
                            "effective_cost": value,
                            "currency": "EUR",
                            "import_id": import_id,
                            "actor": "bench",
                        }
                    )
            for back in range(7):  # this month and the six before it
                monthly.append(
                    {
                        "import_id": import_id,
                        "tenant_id": tenant_id,
                        "month": date(2026, 10 - back, 1),
                        "currency": "EUR",
                        "billed_cost": total - back,
                        "effective_cost": total - back,
                        "lines": 60,
                    }
                )
            for kind, on in (("alert", 12), ("follow_up", 20)):
                lines.append(
                    {
                        "tenant_id": tenant_id,
                        "kind": kind,
                        "at": datetime(2026, 10, on, 8, tzinfo=UTC),
                        "actor": "bench",
                        "ref": f"{kind}-{n}",
                        "data": {"summary": "80 % of budget"},
                    }
                )
            if len(daily) >= 50_000:
                session.execute(insert(CostDaily), daily)
                session.execute(insert(LedgerEntry), lines)
                daily, lines = [], []
        if daily:
            session.execute(insert(CostDaily), daily)
        if lines:
            session.execute(insert(LedgerEntry), lines)
        for start in range(0, len(monthly), 50_000):
            session.execute(insert(CostMonthly), monthly[start : start + 50_000])


def assemble(store: str, tenants: int) -> None:
    url, drop = make_store(store)
    try:
        db = Database(url)
        upgrade(db.engine)
        ids = seed_tenants(db, tenants)
        seed(db, ids)
        if store == "postgres":
            for table in ("cost_daily", "cost_monthly", "tenant_ledger"):
                with db.engine.connect() as conn:
                    conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                        f"VACUUM ANALYZE finops.{table}"
                    )
        else:
            with db.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        month = Month.parse("2026-10")
        now = datetime(2026, 11, 1, 6, tzinfo=UTC)
        print(
            f"assemble {store}: {tenants} tenants, {tenants * 60} cost_daily rows, "
            f"{tenants * 62} ledger rows"
        )
        for _ in range(3):
            with db.read() as session:
                report = timed(
                    "all tenants",
                    lambda: build_report(session, month=month, tenant_id=None, now=now),
                )
        assert isinstance(report, CostReport)
        assert len(report.tenants) == tenants
        with db.read() as session:
            timed(
                "one tenant", lambda: build_report(session, month=month, tenant_id=ids[7], now=now)
            )
        db.dispose()
    finally:
        drop()


def timed(label: str, fn: Callable[[], str | bytes | CostReport]) -> object:
    """Wall and CPU seconds: on a shared machine the CPU figure is the steadier one."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    size = f"{len(result) / 1e6:8.2f} MB" if isinstance(result, str | bytes) else ""
    print(f"{label:<18} {elapsed:8.2f} s wall {used:8.2f} s cpu {size}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument(
        "--unicode-font", action="store_true", help="render the PDF with DejaVu Sans if installed"
    )
    parser.add_argument(
        "--assemble",
        choices=["sqlite", "postgres"],
        help="time build_report over a seeded database instead of rendering",
    )
    args = parser.parse_args()
    if args.assemble:
        assemble(args.assemble, args.tenants)
        return
    report = timed(f"build {args.tenants}", lambda: build(args.tenants))
    assert isinstance(report, CostReport)
    timed("html", lambda: render_html(report))
    timed("csv", lambda: render_csv(report))
    font = find_unicode_font() if args.unicode_font else None
    pdf = timed(
        f"pdf ({'DejaVu' if font else 'core fonts'})", lambda: render_pdf(report, unicode_font=font)
    )
    assert isinstance(pdf, bytes)
    print(f"pdf pages          {pdf.count(b'/Type /Page' + bytes([10])):8d}")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average       {load} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
