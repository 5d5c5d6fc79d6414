"""Audited write throughput and audit verification speed, on SQLite and PostgreSQL.

Every change takes the audit head lock, so audited writes are serialised; this
measures what that costs. Runs the service layer in-process (no HTTP), with
N writer threads doing request -> governance approval -> security approval.

    .venv/bin/python bench/bench_audited_writes.py --store sqlite --tenants 300 --threads 4
    .venv/bin/python bench/bench_audited_writes.py --store postgres --tenants 300 --threads 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

from stores import make_store

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.migrations import upgrade
from tenantops.tenants import service
from tenantops.tenants.schemas import ApprovalCreate, TenantCreate

AM = Principal("amy", frozenset({Role.ACCOUNT_MANAGER}))
GOV = Principal("gus", frozenset({Role.GOVERNANCE}))
SEC = Principal("sue", frozenset({Role.SECURITY}))


def onboard(db: Database, i: int, latencies: list[float]) -> None:
    body = TenantCreate(
        name=f"t-{i}",
        display_name=f"T {i}",
        business_owner="o@example.com",
        compliance_classification="internal",
        region="eu-central-1",
        tier="standard",
        monthly_budget=100,
        currency="EUR",
    )
    for step in range(3):
        started = time.perf_counter()
        with db.write() as s:
            if step == 0:
                service.create_tenant(s, principal=AM, data=body)
            else:
                who, role = (GOV, "governance") if step == 1 else (SEC, "security")
                service.decide_onboarding(
                    s,
                    principal=who,
                    ref=f"t-{i}",
                    data=ApprovalCreate(role=role, decision="approve"),
                )
        latencies.append(time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--tenants", type=int, default=300)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    url, drop = make_store(args.store)
    db = Database(url, **({"pool_size": args.threads + 2} if args.store == "postgres" else {}))
    upgrade(db.engine)
    latencies: list[float] = []
    queue = list(range(args.tenants))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                i = queue.pop()
            onboard(db, i, latencies)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started

    with db.read() as s:
        v0 = time.perf_counter()
        result = audit.verify(s)
        verify_s = time.perf_counter() - v0
    writes = len(latencies)
    q = statistics.quantiles(latencies, n=100)
    print(f"store={args.store} tenants={args.tenants} threads={args.threads}")
    print(f"audited writes: {writes} in {elapsed:.2f}s = {writes / elapsed:.0f} writes/s")
    print(f"write latency: p50={q[49] * 1000:.1f} ms  p99={q[98] * 1000:.1f} ms")
    print(
        f"audit verify: {result.checked} entries in {verify_s:.3f}s = "
        f"{result.checked / verify_s:.0f} entries/s, ok={result.ok}"
    )
    db.dispose()
    drop()
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
