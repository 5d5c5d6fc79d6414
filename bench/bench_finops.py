"""FinOps benchmarks: importing 1,000,000 FOCUS rows, and cost queries over 10,000 tenants.

(a) import: a deterministic FOCUS file (CSV or Parquet; 1,000 tenants, 30
days, 8 services; 90 % allocated by tag, 9 % by namespace in ResourceId, 1 %
unallocated) is generated once (cached in the temp dir), then imported
through ``importer.import_file`` (no HTTP) in a fresh process, so the peak
RSS is the import's own. Targets: <= 30 s, <= 1 GB.

(b) queries: 10,000 tenants × 30 days × 2 services seeded into ``cost_daily``
(600,000 rows); times the all-tenant month aggregate (what /metrics and the
report read), one page of ``GET /finops/costs`` (1,000 tenants) and the
per-tenant ``budget_status``. Target p99 <= 1 s.

    .venv/bin/python bench/bench_finops.py import --store sqlite --format csv
    .venv/bin/python bench/bench_finops.py import --store postgres --format parquet
    .venv/bin/python bench/bench_finops.py queries --store sqlite
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import Date, func, insert, literal, select
from stores import make_store

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.finops.budgets import budget_status
from tenantops.finops.costs import Month, tenants_month
from tenantops.finops.focus import REQUIRED_COLUMNS
from tenantops.finops.importer import import_file
from tenantops.finops.models import CostDaily, CostImport, CostMonthly
from tenantops.finops.service import cost_overview
from tenantops.finops.settings import FinOpsSettings
from tenantops.kit.clock import set_clock
from tenantops.migrations import upgrade
from tenantops.tenants.models import Tenant

FINANCE = Principal("fin", frozenset({Role.FINANCE}))
SERVICES = ["Compute", "Storage", "Network", "Database", "Kubernetes", "Monitoring", "DNS", "CDN"]
CHUNK = 100_000


def seed_tenants(db: Database, count: int) -> list[str]:
    """Tenants straight into the registry table: setup, not what is measured."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    rows = [
        {
            "id": str(uuid.UUID(int=i + 1)),
            "name": f"bench-{i:05d}",
            "display_name": f"Bench {i}",
            "business_owner": "owner@example.com",
            "compliance_classification": "internal",
            "region": "eu-central-1",
            "tier": "standard",
            "monthly_budget": Decimal(1000),
            "currency": "EUR",
            "contacts": [],
            "ticket_ref": None,
            "state": "active",
            "requested_by": "bench",
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        for i in range(count)
    ]
    with db.write() as session:
        for start in range(0, len(rows), 5000):
            session.execute(insert(Tenant), rows[start : start + 5000])
    return [r["id"] for r in rows]


def _chunk(start: int, n: int, tenants: int) -> pa.Table:
    idx = pa.array(range(start, start + n), pa.int64())
    tenant = pc.cast(pc.remainder(idx, tenants), pa.string())
    name = pc.binary_join_element_wise("bench-", pc.utf8_lpad(tenant, 5, "0"), "")
    day = pc.remainder(pc.divide(idx, tenants * 8), 30)
    base = datetime(2030, 1, 1, tzinfo=UTC)
    starts = pa.array(
        [base + timedelta(days=d) for d in range(30)], pa.timestamp("us", tz="UTC")
    ).take(day)
    ends = pc.add(starts, pa.scalar(timedelta(hours=1), pa.duration("us")))
    bucket = pc.remainder(idx, 100)
    by_tag = pc.less(bucket, 90)
    by_namespace = pc.and_(pc.greater_equal(bucket, 90), pc.less(bucket, 99))
    tags = pc.if_else(
        by_tag,
        pc.binary_join_element_wise('{"tenant": "', name, '", "env": "prod"}', ""),
        pa.scalar('{"env": "prod"}'),
    )
    resource_id = pc.if_else(
        by_namespace,
        pc.binary_join_element_wise(
            "/clusters/c1/namespaces/", name, "/pods/p", pc.cast(idx, pa.string()), ""
        ),
        pc.binary_join_element_wise("/vm/", pc.cast(idx, pa.string()), ""),
    )
    cents = pc.add(pc.remainder(pc.multiply(idx, 7919), 10_000), 1)
    cost_text = pc.binary_join_element_wise(
        pc.cast(pc.divide(cents, 100), pa.string()),
        pc.utf8_lpad(pc.cast(pc.remainder(cents, 100), pa.string()), 2, "0"),
        ".",
    )
    service = pa.array(SERVICES).take(pc.remainder(idx, len(SERVICES)))

    def const(value: str) -> pa.Array:
        return pa.repeat(pa.scalar(value), n)

    columns = {
        "BilledCost": cost_text,
        "BillingAccountId": const("acct-bench"),
        "BillingAccountName": const("Bench"),
        "BillingCurrency": const("EUR"),
        "BillingPeriodStart": const("2030-01-01T00:00:00Z"),
        "BillingPeriodEnd": const("2030-02-01T00:00:00Z"),
        "ChargeCategory": const("Usage"),
        "ChargeClass": pa.nulls(n, pa.string()),
        "ChargeDescription": const("usage"),
        "ChargePeriodStart": pc.strftime(starts, format="%Y-%m-%dT%H:%M:%SZ"),
        "ChargePeriodEnd": pc.strftime(ends, format="%Y-%m-%dT%H:%M:%SZ"),
        "ContractedCost": cost_text,
        "EffectiveCost": cost_text,
        "InvoiceIssuerName": const("Cloud Inc"),
        "ListCost": cost_text,
        "PricingQuantity": const("1"),
        "PricingUnit": const("Hours"),
        "ProviderName": const("Cloud Inc"),
        "PublisherName": const("Cloud Inc"),
        "ServiceCategory": const("Compute"),
        "ServiceName": service,
        "ResourceId": resource_id,
        "RegionId": const("eu-central-1"),
        "SkuId": const("sku-1"),
        "Tags": tags,
    }
    return pa.table([columns[c] for c in REQUIRED_COLUMNS], names=list(REQUIRED_COLUMNS))


def generate(path: Path, rows: int, fmt: str, tenants: int = 1000) -> None:
    writer: pacsv.CSVWriter | pq.ParquetWriter | None = None
    for start in range(0, rows, CHUNK):
        table = _chunk(start, min(CHUNK, rows - start), tenants)
        if fmt == "parquet":
            typed = table
            for col in ("BilledCost", "ContractedCost", "EffectiveCost", "ListCost"):
                i = typed.schema.get_field_index(col)
                typed = typed.set_column(i, col, pc.cast(typed.column(col), pa.decimal128(20, 2)))
            for col in ("ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart"):
                i = typed.schema.get_field_index(col)
                typed = typed.set_column(
                    i, col, pc.cast(typed.column(col), pa.timestamp("us", tz="UTC"))
                )
            i = typed.schema.get_field_index("BillingPeriodEnd")
            typed = typed.set_column(
                i,
                "BillingPeriodEnd",
                pc.cast(typed.column("BillingPeriodEnd"), pa.timestamp("us", tz="UTC")),
            )
            if writer is None:
                writer = pq.ParquetWriter(path, typed.schema)
            writer.write_table(typed)
        else:
            if writer is None:
                writer = pacsv.CSVWriter(path, table.schema)
            writer.write_table(table)
    assert writer is not None
    writer.close()


def run_import(url: str, path: Path, fmt: str) -> None:
    """Child process: import ``path`` and print figures (RSS is this process's own)."""
    db = Database(url)
    started = time.perf_counter()
    with db.write() as session:
        result = import_file(session, path=path, principal=FINANCE, settings=FinOpsSettings())
        rec = result.record
        summary = (rec.rows, rec.allocated_rows, rec.unallocated_rows, rec.effective_cost)
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows, allocated, unallocated, cost = summary
    print(
        f"import {fmt} {db.engine.dialect.name}: {rows} rows in {elapsed:.1f} s "
        f"({rows / elapsed:,.0f} rows/s), peak RSS {peak_mb:,.0f} MB; "
        f"allocated {allocated}, unallocated {unallocated}, effective cost {cost}"
    )
    db.dispose()


def bench_import(store: str, fmt: str, rows: int) -> None:
    cache = Path(tempfile.gettempdir()) / f"tenantops-focus-{rows}.{fmt}"
    if not cache.exists():
        started = time.perf_counter()
        generate(cache, rows, fmt)
        print(
            f"generated {cache} ({cache.stat().st_size / 1e6:,.0f} MB) "
            f"in {time.perf_counter() - started:.1f} s"
        )
    url, drop = make_store(store)
    try:
        db = Database(url)
        upgrade(db.engine)
        seed_tenants(db, 1000)
        db.dispose()
        child = [sys.executable, __file__, "_import", "--url", url, "--file", str(cache)]
        subprocess.run([*child, "--format", fmt], check=True)
    finally:
        drop()


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    p50 = statistics.median(ordered)
    return f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (n={len(ordered)})"


def bench_queries(store: str, tenants: int) -> None:
    url, drop = make_store(store)
    try:
        db = Database(url)
        upgrade(db.engine)
        ids = seed_tenants(db, tenants)
        import_id = str(uuid.uuid4())
        now = datetime(2030, 1, 31, tzinfo=UTC)
        with db.write() as session:
            session.add(
                CostImport(
                    id=import_id,
                    sha256="0" * 64,
                    filename="seed",
                    format="csv",
                    billing_account_id="acct",
                    billing_period_start=datetime(2030, 1, 1, tzinfo=UTC),
                    billing_period_end=datetime(2030, 2, 1, tzinfo=UTC),
                    currency="EUR",
                    rows=0,
                    allocated_rows=0,
                    unallocated_rows=0,
                    billed_cost=Decimal(0),
                    effective_cost=Decimal(0),
                    unallocated_cost=Decimal(0),
                    summary={},
                    imported_by="bench",
                    imported_at=now,
                )
            )
            batch = []
            for n, tenant_id in enumerate(ids):
                for d in range(30):
                    for service in SERVICES[:2]:
                        value = Decimal((n * 31 + d) % 500) / 10
                        batch.append(
                            {
                                "import_id": import_id,
                                "tenant_id": tenant_id,
                                "day": date(2030, 1, 1) + timedelta(days=d),
                                "service_name": service,
                                "currency": "EUR",
                                "billed_cost": value,
                                "effective_cost": value,
                                "lines": 24,
                            }
                        )
                if len(batch) >= 50_000:
                    session.execute(insert(CostDaily), batch)
                    batch = []
            if batch:
                session.execute(insert(CostDaily), batch)
            # What the importer derives from the daily rows: one row per tenant and month.
            session.execute(
                insert(CostMonthly).from_select(
                    [
                        "import_id",
                        "tenant_id",
                        "month",
                        "currency",
                        "billed_cost",
                        "effective_cost",
                        "lines",
                    ],
                    select(
                        CostDaily.import_id,
                        CostDaily.tenant_id,
                        literal(date(2030, 1, 1), Date()),
                        CostDaily.currency,
                        func.sum(CostDaily.billed_cost),
                        func.sum(CostDaily.effective_cost),
                        func.sum(CostDaily.lines),
                    ).group_by(CostDaily.import_id, CostDaily.tenant_id, CostDaily.currency),
                )
            )
        if store == "postgres":
            with db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM ANALYZE finops.cost_daily"
                )
        else:
            with db.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        set_clock(lambda: now)
        month = Month.parse("2030-01")
        settings = FinOpsSettings()
        all_tenants, page, per_tenant = [], [], []
        rng = random.Random(7)
        for _ in range(20):
            with db.read() as session:
                started = time.perf_counter()
                totals = tenants_month(session, None, month, cost_column="EffectiveCost")
                all_tenants.append(time.perf_counter() - started)
                assert len(totals) == tenants
                started = time.perf_counter()
                cost_overview(session, month="2030-01", settings=settings, cursor=None, limit=1000)
                page.append(time.perf_counter() - started)
        for _ in range(500):
            tenant_id = rng.choice(ids)
            with db.read() as session:
                started = time.perf_counter()
                budget_status(session, tenant_id, month)
                per_tenant.append(time.perf_counter() - started)
        print(f"queries {store}: {tenants} tenants x 30 days x 2 services = {tenants * 60} rows")
        print(f"  all-tenant month aggregate: {_percentiles(all_tenants)}")
        print(f"  GET /finops/costs page of 1000: {_percentiles(page)}")
        print(f"  budget_status (one tenant): {_percentiles(per_tenant)}")
        db.dispose()
    finally:
        set_clock(None)
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["import", "queries", "_import"])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--url")
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    if args.what == "_import":
        run_import(args.url, args.file, args.format)
    elif args.what == "import":
        bench_import(args.store, args.format, args.rows)
    else:
        bench_queries(args.store, args.tenants)


if __name__ == "__main__":
    main()
