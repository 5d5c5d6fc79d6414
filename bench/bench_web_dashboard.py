"""KPI dashboard with 10,000 tenants: compute_kpis, GET /api/v1/kpis and GET / server time.

Run: .venv/bin/python bench/bench_web_dashboard.py [sqlite|postgres]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

# The fixtures' helpers (PostgreSQL databases, tokens) come from the test suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient
from sqlalchemy import insert, text
from tests.conftest import create_pg_database, drop_pg_database
from tests.servers import bearer, mint_token

from tenantops.app import create_app
from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import SYSTEM, Role
from tenantops.config import Settings, WorkerSettings
from tenantops.db import Database
from tenantops.migrations import upgrade
from tenantops.tenants.models import Tenant
from tenantops.web import service
from tenantops.web.kpis import KpiFilter, compute_kpis

N = 10_000


def main() -> None:
    store = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    tmp = Path(tempfile.mkdtemp())
    url = f"sqlite:///{tmp / 'bench.db'}" if store == "sqlite" else create_pg_database()
    db = Database(url)
    upgrade(db.engine)
    now = datetime.now(UTC)
    tenants, entries = [], []
    for i in range(N):
        tid = f"00000000-0000-7000-8000-{i:012d}"
        created = now - timedelta(days=10, minutes=i % 500)
        tenants.append(
            {
                "id": tid,
                "name": f"t-{i:05d}",
                "display_name": f"T {i}",
                "business_owner": "o@x",
                "compliance_classification": "internal",
                "region": ["eu-central-1", "us-east-1"][i % 2],
                "tier": ["gold", "standard", "basic"][i % 3],
                "monthly_budget": Decimal(1000),
                "currency": "EUR",
                "contacts": [],
                "ticket_ref": None,
                "state": "active" if i % 4 else "requested",
                "requested_by": "b",
                "created_at": created,
                "updated_at": created,
                "version": 1,
            }
        )
        if i % 4:
            for _k, (action, dt) in enumerate(
                (("tenant.approved", 5), ("tenant.step.verified", 20 + i % 30))
            ):
                seq = len(entries) + 1
                entries.append(
                    {
                        "seq": seq,
                        "id": f"e{seq}",
                        "at": created + timedelta(minutes=dt),
                        "actor": "x",
                        "actor_roles": [],
                        "action": action,
                        "tenant_id": tid,
                        "request_id": None,
                        "changes": {},
                        "detail": {},
                        "prev_hash": "0",
                        "hash": "0",
                    }
                )
    with db.engine.begin() as conn:
        conn.execute(insert(Tenant), tenants)
        conn.execute(insert(AuditEntry), entries)
        conn.execute(text("UPDATE audit_head SET seq = :s"), {"s": len(entries)})
    with db.write() as session:
        service.create_user(
            session,
            actor=SYSTEM,
            username="root",
            password="x" * 16,
            roles=[Role.ADMIN],
            tenant_id=None,
        )
    principal = SYSTEM

    def timed(fn, runs=15):  # type: ignore[no-untyped-def]
        fn()
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1000)
        return statistics.median(samples), max(samples)

    def kpis() -> None:
        with db.read() as session:
            compute_kpis(session, principal=principal, filters=KpiFilter())

    def kpis_gold() -> None:
        with db.read() as session:
            compute_kpis(session, principal=principal, filters=KpiFilter(tier="gold"))

    if "--profile" in sys.argv:
        import cProfile
        import pstats

        cProfile.runctx("kpis()", globals(), locals(), str(Path(tmp) / "kpis.prof"))
        pstats.Stats(str(Path(tmp) / "kpis.prof")).sort_stats("cumulative").print_stats(25)
        return
    settings = Settings(
        data_dir=tmp, log_json=False, log_level="WARNING", worker=WorkerSettings(in_process=False)
    )
    token = bearer(mint_token(db, "bench", "admin"))
    with TestClient(create_app(settings, db=db), base_url="http://127.0.0.1") as c:
        c.get("/login")
        r = c.post(
            "/login",
            data={
                "username": "root",
                "password": "x" * 16,
                "csrf_token": c.cookies["tenantops_login_csrf"],
            },
            follow_redirects=False,
        )
        assert r.status_code == 303
        api = lambda: c.get("/api/v1/kpis", headers=token).raise_for_status()  # noqa: E731
        page = lambda: c.get("/").raise_for_status()  # noqa: E731
        page_gold = lambda: c.get("/?tier=gold").raise_for_status()  # noqa: E731
        size = len(c.get("/").content)
        for label, fn in (
            ("compute_kpis (all)", kpis),
            ("compute_kpis (tier=gold)", kpis_gold),
            ("GET /api/v1/kpis", api),
            ("GET / (page)", page),
            ("GET /?tier=gold", page_gold),
        ):
            med, worst = timed(fn)
            print(f"{store} {N} tenants  {label:28s} median {med:7.1f} ms  max {worst:7.1f} ms")
        print(f"page size {size / 1024:.0f} KiB")
    db.dispose()
    if store == "postgres":
        drop_pg_database(url)


if __name__ == "__main__":
    main()
