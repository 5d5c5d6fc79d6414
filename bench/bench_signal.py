"""Signal latency: an approval given on a waiting gate -> the next step started.

A run of ``gate -> noop`` waits at its gate; the benchmark signals the gate
(``engine.signal`` by a governance principal, its own write transaction) and
measures ``next step.started_at - signal.created_at`` — both stamped by the
engine, on one host clock. An in-process ``Worker`` serves in a background
thread, as in ``tenantops serve``; with ``--mode wake`` the caller calls
``Worker.wake()`` after the commit (what the runs API does), with
``--mode poll`` the worker only finds the step at its next poll
(``--poll-seconds``, default 0.5 = the ``worker.poll_seconds`` default).
One signal at a time, after a random pause (10-60 ms; with ``poll``, up to a
whole poll interval), so samples do not line up with the poll.

    .venv/bin/python bench/bench_signal.py --store sqlite   --mode wake --samples 300
    .venv/bin/python bench/bench_signal.py --store sqlite   --mode poll --samples 100
    .venv/bin/python bench/bench_signal.py --store postgres --mode wake --samples 300
    .venv/bin/python bench/bench_signal.py --store postgres --mode poll --samples 100
    .venv/bin/python bench/bench_signal.py --store sqlite   --mode api  --samples 50

``--mode api`` goes through a real ``tenantops serve`` (in-process worker):
the tenant is requested with ``POST /api/v1/tenants`` and approved with
``POST /api/v1/tenants/{name}/approvals`` by governance then security; the
latency is ``start-provisioning`` started - the gate's signal created.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time

from bench_engine import fresh_store, sqlalchemy_url

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.kit.clock import as_utc
from tenantops.migrations import upgrade
from tenantops.runbooks import engine
from tenantops.runbooks.actions import builtin_actions
from tenantops.runbooks.spec import parse
from tenantops.runbooks.worker import Worker

RUNBOOK = """
id: bench-gate
version: "1.0"
title: Gate then a step
tenant: false
steps:
  - {name: gate, gate: {roles: [governance]}}
  - {name: next, action: noop, params: {x: 1}}
"""

AMY = Principal("amy", frozenset({Role.ADMIN}))
GUS = Principal("gus", frozenset({Role.GOVERNANCE}))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(store: str, mode: str, samples: int, poll_seconds: float) -> list[float]:
    url, drop = fresh_store(store, "signal")
    db = Database(sqlalchemy_url(url))
    upgrade(db.engine)
    loaded = parse(RUNBOOK)
    worker = Worker(db, builtin_actions(), name="bench", poll_seconds=poll_seconds)
    worker.start()
    latencies: list[float] = []
    try:
        for _ in range(samples):
            with db.write() as s:
                run_id = engine.start_run(s, loaded=loaded, actor=AMY, audited=False).id
            # Jitter, so a signal lands anywhere in the worker's poll cycle.
            time.sleep(random.uniform(0.01, 0.06 if mode == "wake" else 0.01 + poll_seconds))
            with db.write() as s:
                sig = engine.signal(
                    s, run_id=run_id, step_name="gate", decision="approve", principal=GUS
                )
                given = as_utc(sig.created_at)
            if mode == "wake":
                worker.wake()
            until = time.monotonic() + 10
            started = None
            while time.monotonic() < until:
                with db.read() as s:
                    nxt = engine.steps_of(s, run_id)[1]
                    started = nxt.started_at
                if started is not None:
                    break
                time.sleep(0.002)
            if started is None:
                raise SystemExit(f"run {run_id}: the next step never started")
            latencies.append((as_utc(started) - given).total_seconds() * 1000)
    finally:
        worker.stop()
        db.dispose()
        drop()
    return latencies


def measure_api(store: str, samples: int, poll_seconds: float) -> list[float]:
    """Through ``tenantops serve`` (in-process worker): POST a tenant, wait for its
    onboarding run to wait at the approval gate, POST the governance and the
    security approvals; latency = ``start-provisioning`` started - the gate's
    signal created."""
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import httpx
    from bench_onboarding import HOST, free_port
    from sqlalchemy import select

    from tenantops.auth import tokens
    from tenantops.auth.principal import SYSTEM
    from tenantops.runbooks.models import Run, RunSignal, RunStep

    url, drop = fresh_store(store, "api")
    db = Database(sqlalchemy_url(url))
    upgrade(db.engine)
    people = {}
    with db.write() as s:
        for who, role in (
            ("amy", Role.ACCOUNT_MANAGER),
            ("gus", Role.GOVERNANCE),
            ("sue", Role.SECURITY),
        ):
            value = tokens.create_token(
                s, actor=SYSTEM, subject=who, roles=[role], tenant_id=None, ttl=None
            ).value
            people[who] = {"Authorization": f"Bearer {value}"}
    data = Path(tempfile.mkdtemp(prefix="bench-signal-api-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTOPS_")}
    env.update(
        TENANTOPS_DATA_DIR=str(data),
        TENANTOPS_DATABASE_URL=sqlalchemy_url(url),
        TENANTOPS_WORKER__POLL_SECONDS=str(poll_seconds),
        TENANTOPS_BOOTSTRAP_ADMIN="false",
        TENANTOPS_LOG_LEVEL="WARNING",
    )
    log = (data / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenantops.cli", "serve", "--host", HOST, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = httpx.Client(base_url=f"http://{HOST}:{port}/api/v1", timeout=30)
    latencies: list[float] = []
    try:
        until = time.monotonic() + 60
        while time.monotonic() < until:
            try:
                if httpx.get(f"http://{HOST}:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        for i in range(samples):
            name = f"sig-{i}"
            r = api.post(
                "/tenants",
                headers=people["amy"],
                json={
                    "name": name,
                    "display_name": name,
                    "business_owner": "o@example.com",
                    "compliance_classification": "internal",
                    "region": "eu-central-1",
                    "tier": "standard",
                    "monthly_budget": 100,
                    "currency": "EUR",
                    "ticket_ref": f"RITM{i:07d}",
                },
            )
            r.raise_for_status()
            tenant_id = r.json()["id"]
            run_id = None
            until = time.monotonic() + 30
            while time.monotonic() < until and run_id is None:
                with db.read() as s:
                    run_id = s.execute(
                        select(Run.id).where(Run.tenant_id == tenant_id, Run.status == "waiting")
                    ).scalar()
                time.sleep(0.01)
            time.sleep(random.uniform(0.01, 0.01 + poll_seconds))
            for who, role in (("gus", "governance"), ("sue", "security")):
                api.post(
                    f"/tenants/{name}/approvals",
                    headers=people[who],
                    json={"role": role, "decision": "approve"},
                ).raise_for_status()
            started = None
            until = time.monotonic() + 30
            while time.monotonic() < until and started is None:
                with db.read() as s:
                    started = s.execute(
                        select(RunStep.started_at).where(
                            RunStep.run_id == run_id, RunStep.name == "start-provisioning"
                        )
                    ).scalar()
                    given = s.execute(
                        select(RunSignal.created_at).where(RunSignal.run_id == run_id)
                    ).scalar()
                time.sleep(0.002)
            if started is None or given is None:
                raise SystemExit(f"tenant {name}: provisioning never started")
            latencies.append((as_utc(started) - as_utc(given)).total_seconds() * 1000)
    finally:
        api.close()
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
        db.dispose()
        drop()
    return latencies


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--mode", choices=["wake", "poll", "api"], default="wake")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--poll-seconds", type=float, default=0.5)
    args = p.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    if args.mode == "api":
        ms = measure_api(args.store, args.samples, args.poll_seconds)
    else:
        ms = measure(args.store, args.mode, args.samples, args.poll_seconds)
    p50, p99 = pct(ms, 50), pct(ms, 99)
    print(
        f"| {args.store} | {args.mode} | {args.poll_seconds:g} s | {len(ms)} | "
        f"{p50:.1f} ms | {p99:.1f} ms | {max(ms):.1f} ms | {statistics.fmean(ms):.1f} ms | "
        f"{'met' if p99 < 100 else 'NOT met'} |"
    )


if __name__ == "__main__":
    main()
