"""N pre-approved tenants through the full ``tenant-onboarding`` runbook, embedded default.

The embedded default: SQLite in a fresh temporary data directory, the local
drivers (a real git repository for GitOps, manifests validated against the
Kubernetes schemas, identity/secrets/access in the database, the notification
outbox). The built-in health probe needs a live server, so ``tenantops serve``
runs as a subprocess on a free port of 127.0.0.1 with its in-process worker
off (``TENANTOPS_WORKER__IN_PROCESS=false``); the health checks of the workers
call it.

1. setup (not timed as throughput): N tenants requested with
   ``tenants.service.create_tenant`` (which starts their onboarding runs) and
   approved with ``decide_onboarding`` by governance and by security (two
   principals); the moment each second approval commits is noted;
2. then W worker threads (``wiring.build_actions``) start and drain them.

Reported: wall time from the workers' start to the last run finished, runs/s,
and per tenant the time from its second approval to ``active`` (the
``verified`` step's ``finished_at``: its ``tenant.transition`` is what makes
the tenant active). Because every tenant is approved before the workers
start, that time includes queueing behind the others; the run's own time
(first step after the gate started -> ``active``) is reported beside it.
With ``--rate R`` the tenants are instead requested and approved at R per
second while the workers run, so approval -> active is the latency one tenant
sees on a system that keeps up.

    .venv/bin/python bench/bench_onboarding.py --tenants 1000
    .venv/bin/python bench/bench_onboarding.py --tenants 200 --rate 1
    .venv/bin/python bench/bench_onboarding.py --tenants 100 --workers 2
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select

from tenantops.auth.principal import Principal, Role
from tenantops.config import Settings, WorkerSettings
from tenantops.db import Database
from tenantops.kit.clock import as_utc
from tenantops.migrations import upgrade
from tenantops.runbooks.models import Run, RunStep
from tenantops.runbooks.worker import Worker
from tenantops.tenants import service
from tenantops.tenants.models import Tenant
from tenantops.tenants.schemas import ApprovalCreate, TenantCreate
from tenantops.wiring import build_actions

HOST = "127.0.0.1"
AMY = Principal("amy", frozenset({Role.ACCOUNT_MANAGER}))
GUS = Principal("gus", frozenset({Role.GOVERNANCE}))
SUE = Principal("sue", frozenset({Role.SECURITY}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def start_server(data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTOPS_")}
    env.update(
        TENANTOPS_DATA_DIR=str(data),
        TENANTOPS_WORKER__IN_PROCESS="false",
        TENANTOPS_BOOTSTRAP_ADMIN="false",
        TENANTOPS_LOG_JSON="false",
        TENANTOPS_LOG_LEVEL="WARNING",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tenantops.cli", "serve", "--host", HOST, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    until = time.monotonic() + 60
    while time.monotonic() < until:
        if proc.poll() is not None:
            raise SystemExit(f"tenantops serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://{HOST}:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("tenantops serve did not become ready")


def request_and_approve(db: Database, n: int, rate: float = 0.0) -> dict[str, float]:
    """Tenants t-0 … t-(n-1), requested and approved twice; their second-approval times.

    ``rate`` > 0 paces the requests at that many tenants per second.
    """
    approved: dict[str, float] = {}
    began = time.perf_counter()
    for i in range(n):
        if rate > 0:
            time.sleep(max(0.0, began + i / rate - time.perf_counter()))
        name = f"t-{i}"
        with db.write() as s:
            service.create_tenant(
                s,
                principal=AMY,
                data=TenantCreate(
                    name=name,
                    display_name=f"Tenant {i}",
                    business_owner="owner@example.com",
                    compliance_classification="internal",
                    region="eu-central-1",
                    tier="standard",
                    monthly_budget=100,
                    currency="EUR",
                    contacts=["ops@example.com"],
                    ticket_ref=f"RITM{i:07d}",
                ),
            )
        for who, role in ((GUS, "governance"), (SUE, "security")):
            with db.write() as s:
                service.decide_onboarding(
                    s, principal=who, ref=name, data=ApprovalCreate(role=role, decision="approve")
                )
        approved[name] = time.time()
    return approved


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tenants", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2, help="worker threads")
    p.add_argument("--concurrency", type=int, default=4, help="steps claimed per batch")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="instead of approving all first: request+approve this many tenants/s "
        "while the workers run (approval->active without a backlog)",
    )
    p.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    args = p.parse_args()
    logging.getLogger().setLevel(logging.WARNING)

    tmp = Path(tempfile.mkdtemp(prefix="bench-onboarding-"))
    data = tmp / "data"
    data.mkdir()
    port = free_port()
    settings = Settings(
        data_dir=data,
        host=HOST,
        port=port,
        bootstrap_admin=False,
        worker=WorkerSettings(in_process=False),
    )
    db = Database(settings.resolved_database_url())
    upgrade(db.engine)
    server = start_server(data, port, tmp / "serve.log")
    workers: list[Worker] = []
    try:
        approved: dict[str, float] = {}
        setup = 0.0
        if not args.rate:
            t0 = time.perf_counter()
            approved = request_and_approve(db, args.tenants)
            setup = time.perf_counter() - t0
            print(f"setup: {args.tenants} tenants requested and approved in {setup:.1f}s")

        workers = [
            Worker(
                db,
                build_actions(settings, db),
                name=f"w{i}",
                concurrency=args.concurrency,
                poll_seconds=0.1,
            )
            for i in range(args.workers)
        ]
        started = time.perf_counter()
        for w in workers:
            w.start()
        feeder = None
        if args.rate:
            feeder = threading.Thread(
                target=lambda: approved.update(request_and_approve(db, args.tenants, args.rate))
            )
            feeder.start()
        deadline = time.monotonic() + args.timeout
        finished = 0
        last_report = time.monotonic()
        while time.monotonic() < deadline:
            with db.read() as s:
                finished = s.execute(
                    select(func.count()).select_from(Run).where(Run.finished_at.is_not(None))
                ).scalar_one()
            if finished >= args.tenants:
                break
            if time.monotonic() - last_report > 30:
                rate = finished / (time.perf_counter() - started)
                print(f"  {finished} runs finished ({rate:.2f}/s)", flush=True)
                last_report = time.monotonic()
            time.sleep(0.2)
        wall = time.perf_counter() - started
        for w in workers:
            w.stop()
        if feeder is not None:
            feeder.join()

        with db.read() as s:
            runs = {r.id: r for r in s.execute(select(Run)).scalars()}
            names = {t.id: t.name for t in s.execute(select(Tenant)).scalars()}
            states = {
                row[0]: row[1]
                for row in s.execute(select(Tenant.state, func.count()).group_by(Tenant.state))
            }
            steps = s.execute(
                select(RunStep).where(RunStep.name.in_(("start-provisioning", "verified")))
            ).scalars()
            begun: dict[str, datetime] = {}
            active: dict[str, datetime] = {}
            for st in steps:
                if st.name == "start-provisioning" and st.started_at is not None:
                    begun[st.run_id] = as_utc(st.started_at)
                if st.name == "verified" and st.status == "succeeded" and st.finished_at:
                    active[st.run_id] = as_utc(st.finished_at)
        by_status: dict[str, int] = {}
        for r in runs.values():
            by_status[r.status] = by_status.get(r.status, 0) + 1
        to_active, own = [], []
        for run_id, at in active.items():
            name = names[runs[run_id].tenant_id or ""]
            to_active.append(at.timestamp() - approved[name])
            own.append((at - begun[run_id]).total_seconds())
        print(f"runs by status: {by_status}; tenants by state: {states}")
        print(
            "| tenants | workers × batch | wall s | runs/s | approval→active p50 | p99 | "
            "run's own time p50 | p99 |"
        )
        print("|---|---|---|---|---|---|---|---|")
        if to_active:
            print(
                f"| {len(to_active)} of {args.tenants} | {args.workers} × {args.concurrency} | "
                f"{wall:.1f} | {by_status.get('succeeded', 0) / wall:.2f} | "
                f"{pct(to_active, 50):.1f} s | {pct(to_active, 99):.1f} s | "
                f"{pct(own, 50):.2f} s | {pct(own, 99):.2f} s |"
            )
        print(f"(setup {setup:.1f}s; data dir kept for inspection: {data})")
    finally:
        for w in workers:
            w.stop()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        db.dispose()


if __name__ == "__main__":
    main()
