"""Alertmanager receiver under load: 300 alerts/s open-loop against a real server process.

Starts ``tenantops serve`` (uvicorn, its in-process worker on) on SQLite or a
fresh PostgreSQL database, creates tenants, then posts Alertmanager-shaped
notifications (one alert each) on a fixed schedule — open loop: a slow answer
does not delay the next send. Half the sends repeat an earlier notification
(Alertmanager's repeats and retries), some resolve an earlier alert, and a
share of new alerts names a playbook (a run per alert). Prints the achieved
rate, latency p50/p99 (from the scheduled send, so queueing counts) and errors,
then checks every distinct alert was stored exactly once.

    .venv/bin/python bench/bench_alerts.py --store sqlite --rate 300 --seconds 20
    .venv/bin/python bench/bench_alerts.py --store postgres --rate 300 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text
from stores import make_store

from tenantops.alerts.models import Alert
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.migrations import upgrade
from tenantops.tenants import service as tenants
from tenantops.tenants.schemas import TenantCreate

HOST = "127.0.0.1"
# As many connections as the server has handler threads (anyio's 40): more only queue there.
CONNECTIONS = 40
AM = Principal("amy", frozenset({Role.ACCOUNT_MANAGER}))
PLAYBOOK = """\
id: bench-alert
version: "1.0"
title: Bench alert playbook
kind: playbook
inputs:
  tenant: {type: object}
  alert: {type: object}
steps:
  - {name: acknowledge, action: noop}
  - {name: until-resolved, gate: {roles: [ops_engineer], signal: alert_resolved}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def create_tenants(db: Database, count: int) -> list[str]:
    names = [f"bench-{i}" for i in range(count)]
    for name in names:
        with db.write() as session:
            tenants.create_tenant(
                session,
                principal=AM,
                data=TenantCreate(
                    name=name,
                    display_name=name,
                    business_owner="o@example.com",
                    compliance_classification="internal",
                    region="eu-central-1",
                    tier="standard",
                    monthly_budget=100,
                    currency="EUR",
                ),
            )
    return names


def serve(url: str, token: str, runbooks: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTOPS_")}
    env.update(
        TENANTOPS_DATABASE_URL=url,
        TENANTOPS_DATA_DIR=str(log.parent),
        TENANTOPS_BOOTSTRAP_ADMIN="false",
        # The receiver alone: the runs it starts are the engine's work (bench_engine.py).
        TENANTOPS_WORKER__IN_PROCESS="false",
        TENANTOPS_ALERTS__BEARER_TOKEN=token,
        TENANTOPS_ALERTS__RUNBOOKS_DIR=str(runbooks),
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tenantops.cli", "serve", "--host", HOST, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit("server not ready within 30 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``), so a busy host's share shows."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Traffic:
    """Notification number ``i``: new firing alerts, a repeat of an earlier one, or resolutions.

    Each carries ``per`` alerts of one tenant, as Alertmanager groups by
    tenant: half the sends repeat an earlier notification (its repeats and
    retries), one in ten resolves alerts that fired, the rest fire new ones.
    """

    def __init__(self, names: list[str], playbook_share: float, seed: int, per: int) -> None:
        self.names = names
        self.playbook_share = playbook_share
        self.per = per
        self.rng = random.Random(seed)
        self.sent: list[dict[str, Any]] = []
        self.firing: dict[str, list[dict[str, Any]]] = {}
        self.distinct: set[tuple[str, str, str]] = set()

    def _alert(self, tenant: str, n: int) -> dict[str, Any]:
        labels = {"alertname": "TenantBudgetExceeded", "tenant": tenant, "n": str(n)}
        if self.rng.random() < self.playbook_share:
            labels["tenantops_playbook"] = "bench-alert"
        return {
            "status": "firing",
            "labels": labels,
            "annotations": {"summary": f"{tenant} over budget", "value": "1.2"},
            "startsAt": "2030-01-01T08:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph",
            "fingerprint": secrets.token_hex(8),
        }

    def next(self, i: int) -> dict[str, Any]:
        roll = self.rng.random()
        ready = [t for t, alerts in self.firing.items() if len(alerts) >= self.per]
        if self.sent and roll < 0.5:
            body = self.rng.choice(self.sent)  # a repeat or a retry
        elif ready and roll < 0.6:
            tenant = self.rng.choice(ready)
            firing, self.firing[tenant] = (
                self.firing[tenant][: self.per],
                self.firing[tenant][self.per :],
            )
            ended = [{**a, "status": "resolved", "endsAt": "2030-01-01T09:00:00Z"} for a in firing]
            body = self._wrap(tenant, ended)
        else:
            tenant = self.rng.choice(self.names)
            fresh = [self._alert(tenant, i * self.per + k) for k in range(self.per)]
            self.firing.setdefault(tenant, []).extend(fresh)
            body = self._wrap(tenant, fresh)
        for alert in body["alerts"]:
            self.distinct.add((alert["fingerprint"], alert["status"], alert["startsAt"]))
        return body

    def _wrap(self, tenant: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        body = {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="TenantBudgetExceeded", tenant="{tenant}"}}',
            "truncatedAlerts": 0,
            "status": alerts[0]["status"],
            "receiver": "tenantops",
            "groupLabels": {"alertname": "TenantBudgetExceeded", "tenant": tenant},
            "commonLabels": {"alertname": "TenantBudgetExceeded", "tenant": tenant},
            "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:9093",
            "alerts": alerts,
        }
        self.sent.append(body)
        return body


async def load(
    base: str, token: str, traffic: Traffic, rate: float, seconds: float
) -> tuple[list[float], list[float], Counter[str], float]:
    per_second = rate / traffic.per  # notifications per second
    total = int(per_second * seconds)
    bodies = [traffic.next(i) for i in range(total)]
    latencies: list[float] = []
    service: list[float] = []
    outcomes: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        t0 = time.perf_counter() + 0.5
        schedule = iter(enumerate(bodies))

        async def sender() -> None:
            # A fixed set of senders, each taking the next scheduled notification:
            # thousands of tasks queued on httpx's pool cost the client more CPU
            # than the server spends. A send that starts late (all senders busy)
            # counts from its scheduled time, so the queueing is in the figures.
            for i, body in schedule:
                due = t0 + i / per_second
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sent = time.perf_counter()
                try:
                    r = await client.post(
                        "/api/v1/webhooks/alertmanager", json=body, headers=headers
                    )
                    outcomes[str(r.status_code)] += 1
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1
                done = time.perf_counter()
                latencies.append(done - due)
                service.append(done - sent)

        await asyncio.gather(*(sender() for _ in range(CONNECTIONS)))
        span = time.perf_counter() - t0
    return latencies, service, outcomes, span


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rate", type=float, default=300.0, help="alerts (requests) per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--playbook-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--per-notification", type=int, default=1, help="alerts in each notification (a group)"
    )
    args = parser.parse_args()
    # A timeout's SIGTERM still stops the server and drops the database (finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tmp = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    runbooks = tmp / "runbooks"
    runbooks.mkdir()
    (runbooks / "bench-alert.yaml").write_text(PLAYBOOK, encoding="utf-8")
    url, drop = make_store(args.store, tmp)
    try:
        db = Database(url)
        upgrade(db.engine)
        names = create_tenants(db, args.tenants)
        token = secrets.token_urlsafe(24)
        proc, base = serve(url, token, runbooks, tmp / "server.log")
        cpu = 0.0
        try:
            traffic = Traffic(names, args.playbook_share, args.seed, args.per_notification)
            cpu_before = cpu_seconds(proc.pid)
            latencies, service, outcomes, span = asyncio.run(
                load(base, token, traffic, args.rate, args.seconds)
            )
            cpu = cpu_seconds(proc.pid) - cpu_before
        finally:
            proc.terminate()
            proc.wait(15)
        with db.read() as session:
            stored = session.scalar(select(func.count()).select_from(Alert)) or 0
            runs = session.scalar(
                text("SELECT count(*) FROM runs WHERE runbook_id = 'bench-alert'")
            )
        db.dispose()
    finally:
        drop()

    sent = len(latencies)
    ok = outcomes.get("200", 0)
    q = statistics.quantiles(latencies, n=100)
    s = statistics.quantiles(service, n=100)
    print(
        f"store={args.store} rate={args.rate:.0f}/s seconds={args.seconds:.0f} "
        f"tenants={args.tenants} playbook_share={args.playbook_share} "
        f"alerts/notification={args.per_notification}"
    )
    alerts = ok * args.per_notification
    print(
        f"sent {sent} notifications in {span:.2f}s: {ok / span:.0f} notifications/s "
        f"= {alerts / span:.0f} alerts/s answered 200"
    )
    print(f"latency from schedule: p50={q[49] * 1000:.1f} ms  p99={q[98] * 1000:.1f} ms")
    print(f"latency send->answer:  p50={s[49] * 1000:.1f} ms  p99={s[98] * 1000:.1f} ms")
    print(f"answers: {dict(sorted(outcomes.items()))}  errors={sent - ok}")
    print(
        f"server CPU: {cpu:.1f} s = {cpu / sent * 1000:.1f} ms per notification "
        f"(one core: {sent / cpu:.0f}/s); host load {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    print(f"distinct alert states sent={len(traffic.distinct)} stored={stored} runs={runs}")
    return 0 if ok == sent and stored == len(traffic.distinct) else 1


if __name__ == "__main__":
    sys.exit(main())
