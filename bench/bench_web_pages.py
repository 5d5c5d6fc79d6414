"""Server time of every GET page of the web UI, and GET /api/v1/kpis, at 10,000 tenants.

    .venv/bin/python bench/bench_web_pages.py                       # 10,000 tenants, both stores
    .venv/bin/python bench/bench_web_pages.py --tenants 1000 --stores sqlite --samples 3

For each store (``bench/stores.py`` make_store: a fresh SQLite file, or a fresh
PostgreSQL database on 127.0.0.1):

1. seed: one tenant goes through ``tenants.service`` so the onboarding run's
   document and steps are the real ones; the others are bulk-inserted in its
   image with a realistic mix — two thirds active (approved by governance and
   security, onboarding run succeeded with every step and attempt, lifecycle
   audit entries), the rest requested (approval and gate open), provisioning
   (run in progress), suspended or rejected; some SLA breaches and break-glass
   openings; this month's cost (one current import, daily lines per service
   in the ledger, the daily and monthly roll-ups), some FinOps budgets;
2. one local web user per role signs in through the login form (the tenant
   owner is bound to a seeded active tenant) and an API token per role;
3. the pages are discovered from the app: every ``GET`` route listed in
   ``tenantops.auth.policy.WEB_PAGES``, path parameters filled from seeded rows
   (``{ref}``/``{tenant...}``: a tenant, ``{run_id}``: a run of it); nothing is
   named here, so pages added later are measured without editing this file.
   A page whose parameters cannot be filled is listed as skipped;
4. each page is requested by every role, once to warm up and then
   ``--samples`` times; the server time of each is recorded.

Server time is measured inside the app: an ASGI wrapper around the app
``create_app`` returns notes the time from the moment the request enters the
app to the moment the app hands over the last body chunk. It includes every
middleware, the session lookup, the queries and the template rendering; it
excludes the TestClient's request building and response parsing. Beside the
wall time, the process CPU time over the same span (``time.process_time``; the
client waits meanwhile, so it is the request's own CPU): on a shared machine
it shows what a page costs whatever else runs.

Before the clock starts, PostgreSQL is vacuumed, analyzed and checkpointed
(what its background workers do within minutes of such a load) and the app's
startup heap is frozen as ``tenantops serve`` freezes it (``kit.heap``).

Reported per page and store: status codes seen, p50 / p99 server time over all
roles' samples, the CPU p50, the slowest sample with its CPU time and the time
Python's garbage collector took inside it, the role with the slowest median,
and a flag on every page whose p99 is over 200 ms.
"""

from __future__ import annotations

import argparse
import gc
import math
import re
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

# The token helper comes from the test suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, text, update
from stores import make_store

from tenantops.app import create_app
from tenantops.approvals.models import ApprovalDecision, ApprovalRequest
from tenantops.audit.models import AuditEntry, AuditHead
from tenantops.auth.policy import WEB_PAGES
from tenantops.auth.principal import SYSTEM, Principal, Role
from tenantops.config import Settings, WorkerSettings
from tenantops.db import Database
from tenantops.finops.models import Budget, CostDaily, CostImport, CostMonthly, LedgerEntry
from tenantops.kit import heap
from tenantops.migrations import upgrade
from tenantops.notifications.models import OutboxMessage
from tenantops.runbooks.models import Run, RunStep, StepAttempt
from tenantops.tenants import service as tenants
from tenantops.tenants.models import Tenant
from tenantops.tenants.schemas import TenantCreate
from tenantops.web import service as web_users
from tests.servers import bearer, mint_token

TARGET_MS = 200.0
PASSWORD = "bench password 1234"  # noqa: S105 - a throwaway local user
CHUNK = 5_000
SERVICES = ("Compute", "Storage", "Networking")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


class Streaming(Exception):
    """A page that streams (server-sent events) has no end to time: it is listed apart."""


class GcClock:
    """The time Python's cyclic garbage collector has spent, per generation, since start."""

    def __init__(self) -> None:
        self.ms = [0.0, 0.0, 0.0]
        self._started = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.ms[info["generation"]] += (time.perf_counter() - self._started) * 1000


class ServerTimer:
    """ASGI wrapper: the time from a request entering the app to its last body chunk."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.last_ms = 0.0
        self.last_cpu_ms = 0.0
        self.last_gc_ms = 0.0
        self.streamed = False
        self.gc = GcClock()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, cpu, collected = time.perf_counter(), time.process_time(), sum(self.gc.ms)
        self.streamed = False

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                    self.streamed = True
                    raise Streaming  # ends the stream; the client sees a 500
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last_ms = (time.perf_counter() - started) * 1000
                self.last_cpu_ms = (time.process_time() - cpu) * 1000
                self.last_gc_ms = sum(self.gc.ms) - collected
            await send(message)

        await self.app(scope, receive, timed)


# --- seeding -------------------------------------------------------------------------------


@dataclass
class Seeded:
    active: list[tuple[str, str, str]] = field(default_factory=list)  # (tenant id, name, run id)
    owner_tenant: str = ""


def _state_of(i: int) -> str:
    """Two thirds active; the rest requested, provisioning, suspended, rejected."""
    return {0: "requested", 1: "provisioning", 2: "suspended", 3: "rejected"}.get(i % 12, "active")


def seed(db: Database, n: int, now: datetime) -> Seeded:
    """``n`` tenants in the image of one created through the service (see the docstring)."""
    amy = Principal("amy", frozenset({Role.ACCOUNT_MANAGER}))
    with db.write() as s:
        tenants.create_tenant(
            s,
            principal=amy,
            data=TenantCreate(
                name="template",
                display_name="Template",
                business_owner="owner@example.com",
                compliance_classification="internal",
                region="eu-central-1",
                tier="standard",
                monthly_budget=1000,
                currency="EUR",
                contacts=["ops@example.com"],
            ),
        )
    with db.read() as s:
        run = s.execute(select(Run)).scalars().one()
        document, version, digest = run.document, run.runbook_version, run.runbook_hash
        steps = [
            (st.position, st.name, st.kind, st.max_attempts)
            for st in s.execute(select(RunStep).where(RunStep.run_id == run.id)).scalars()
        ]
        seq = int(s.execute(select(AuditHead.seq)).scalar_one())
    steps.sort()
    rows: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    seeded = Seeded()
    month_first = now.date().replace(day=1)
    days = [month_first + timedelta(days=d) for d in range(min(now.day, 7))]
    import_id = str(uuid.uuid4())

    def audit(action: str, tenant_id: str, at: datetime, actor: str = "amy") -> None:
        nonlocal seq
        seq += 1
        rows[AuditEntry].append(
            {
                "seq": seq,
                "id": str(uuid.uuid4()),
                "at": at,
                "actor": actor,
                "actor_roles": [],
                "action": action,
                "tenant_id": tenant_id,
                "request_id": None,
                "changes": {},
                "detail": {},
                "prev_hash": "0" * 64,
                "hash": "0" * 64,
            }
        )

    for i in range(n):
        state = _state_of(i)
        tid, rid, qid = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        name = f"tenant-{i:05d}"
        created = now - timedelta(days=1 + i % 90, minutes=i % 600)
        approved = created + timedelta(minutes=5 + i % 40)
        active_at = approved + timedelta(minutes=8 + i % 45, seconds=i % 60)
        rows[Tenant].append(
            {
                "id": tid,
                "name": name,
                "display_name": f"Tenant {i}",
                "business_owner": f"owner{i % 300}@example.com",
                "compliance_classification": ("internal", "confidential", "public")[i % 3],
                "region": ("eu-central-1", "us-east-1", "ap-southeast-2")[i % 3],
                "tier": ("gold", "standard", "basic")[i % 3 if i % 7 else 0],
                "monthly_budget": Decimal(500 + (i % 20) * 100),
                "currency": "EUR" if i % 10 else "USD",
                "contacts": [f"ops{i % 50}@example.com"],
                "ticket_ref": f"CHG{i:07d}",
                "state": state,
                "requested_by": "amy",
                "created_at": created,
                "updated_at": created,
                # The milestones the service writes with tenant.approved / .step.verified.
                "approved_at": approved if state not in ("requested", "rejected") else None,
                "activated_at": active_at if state in ("active", "suspended") else None,
                "version": 3,
            }
        )
        audit("tenant.requested", tid, created)
        decided = None if state == "requested" else approved
        rows[ApprovalRequest].append(
            {
                "id": qid,
                "tenant_id": tid,
                "kind": "onboarding",
                "status": {"requested": "pending", "rejected": "rejected"}.get(state, "approved"),
                "required_roles": ["governance", "security"],
                "requested_by": "amy",
                "reason": None,
                "created_at": created,
                "decided_at": decided,
            }
        )
        if state != "requested":
            for role, who in (("governance", "gus"), ("security", "sue")):
                rows[ApprovalDecision].append(
                    {
                        "id": str(uuid.uuid4()),
                        "request_id": qid,
                        "role": role,
                        "decision": "reject" if state == "rejected" else "approve",
                        "principal": who,
                        "comment": None,
                        "risk_ref": None,
                        "created_at": approved,
                    }
                )
                audit("tenant.approval.recorded", tid, approved, who)
            if state != "rejected":
                audit("tenant.approved", tid, approved, "sue")
        if state in ("active", "suspended"):
            for event in ("start_provisioning", "provisioned", "verified"):
                audit(f"tenant.step.{event}", tid, active_at if event == "verified" else approved)
        if state == "suspended":
            audit("tenant.suspended", tid, active_at + timedelta(days=1), "olaf")
        if i % 50 == 7:
            audit("run.sla_breached", tid, approved + timedelta(minutes=30), "system")
        if i % 200 == 11:
            audit("breakglass.opened", tid, now - timedelta(hours=i % 48), "olaf")
        if state == "rejected":
            continue
        done = state in ("active", "suspended")
        # Which steps are finished: all of a done run, intake of an open gate, half of one
        # in progress.
        finished_up_to = len(steps) if done else (1 if state == "requested" else 6)
        status = "succeeded" if done else ("waiting" if state == "requested" else "running")
        rows[Run].append(
            {
                "id": rid,
                "runbook_id": "tenant-onboarding",
                "runbook_version": version,
                "runbook_hash": digest,
                "document": document,
                "tenant_id": tid,
                "status": status,
                "inputs": {"tenant_id": tid},
                "started_by": "amy",
                "created_at": created,
                "updated_at": active_at if done else approved,
                "finished_at": active_at if done else None,
                "sla_deadline": approved + timedelta(minutes=30) if state != "requested" else None,
                "sla_breached_at": approved + timedelta(minutes=30) if i % 50 == 7 else None,
                "error": None,
            }
        )
        if done:
            seeded.active.append((tid, name, rid))
        for position, step_name, kind, attempts in steps:
            finished = position < finished_up_to
            sid = str(uuid.uuid4())
            at = created + timedelta(seconds=position * 20)
            waiting = state == "requested" and position == finished_up_to
            rows[RunStep].append(
                {
                    "id": sid,
                    "run_id": rid,
                    "position": position,
                    "name": step_name,
                    "kind": kind,
                    "status": "succeeded" if finished else ("waiting" if waiting else "pending"),
                    "attempt": 1 if finished else 0,
                    "failures": 0,
                    "max_attempts": attempts,
                    "wake_at": None,
                    "lease_owner": None,
                    "lease_token": None,
                    "lease_expires_at": None,
                    "idempotency_key": f"{rid}/{step_name}",
                    "inputs": None,
                    "output": {"ok": True} if finished else None,
                    "evidence": {"ref": f"evidence/{name}/{step_name}"} if finished else None,
                    "error": None,
                    "started_at": at if finished else None,
                    "finished_at": at + timedelta(seconds=15) if finished else None,
                    "sla_deadline": None,
                    "sla_breached_at": None,
                    "decided_by": "sue" if finished and kind == "gate" else None,
                }
            )
            if finished:
                rows[StepAttempt].append(
                    {
                        "id": str(uuid.uuid4()),
                        "step_id": sid,
                        "attempt": 1,
                        "worker": "w1",
                        "status": "succeeded",
                        "started_at": at,
                        "finished_at": at + timedelta(seconds=15),
                        "error": None,
                    }
                )
        if done:
            rows[OutboxMessage].append(
                {
                    "id": str(uuid.uuid4()),
                    "idempotency_key": f"welcome/{tid}",
                    "tenant_id": tid,
                    "tenant_name": name,
                    "run_id": rid,
                    "template": "tenant-active",
                    "audience": "owner",
                    "recipients": [f"ops{i % 50}@example.com"],
                    "subject": f"{name} is active",
                    "body": "Your tenant is ready.",
                    "status": "stored",
                    "attempts": 0,
                    "last_error": None,
                    "created_at": active_at,
                    "updated_at": active_at,
                    "sent_at": None,
                }
            )
            currency = "EUR" if i % 10 else "USD"
            month_total = Decimal(0)
            for day in days:
                for k, service_name in enumerate(SERVICES):
                    amount = Decimal(3 + (i * 7 + k * 13 + day.day) % 40) / 4
                    month_total += amount
                    rows[CostDaily].append(
                        {
                            "import_id": import_id,
                            "tenant_id": tid,
                            "day": day,
                            "service_name": service_name,
                            "currency": currency,
                            "billed_cost": amount,
                            "effective_cost": amount,
                            "lines": 1,
                        }
                    )
                    rows[LedgerEntry].append(
                        {
                            "tenant_id": tid,
                            "kind": "cost",
                            "at": now,
                            "charge_day": day,
                            "service_name": service_name,
                            "resource_id": f"/subscriptions/x/namespaces/{name}/{service_name}",
                            "billed_cost": amount,
                            "effective_cost": amount,
                            "amount": None,
                            "currency": currency,
                            "import_id": import_id,
                            "source_line": len(rows[LedgerEntry]) + 1,
                            "actor": "fiona",
                            "ref": None,
                            "data": None,
                        }
                    )
            rows[CostMonthly].append(
                {
                    "import_id": import_id,
                    "tenant_id": tid,
                    "month": month_first,
                    "currency": currency,
                    "billed_cost": month_total,
                    "effective_cost": month_total,
                    "lines": len(days) * len(SERVICES),
                }
            )
            if i % 5 == 0:
                rows[Budget].append(
                    {
                        "tenant_id": tid,
                        "amount": Decimal(300 + (i % 9) * 50),
                        "currency": currency,
                        "thresholds": [50, 80, 100],
                        "updated_by": "fiona",
                        "updated_at": now,
                        "version": 1,
                    }
                )
    total = sum((r["effective_cost"] for r in rows[CostMonthly]), Decimal(0))
    rows[CostImport].append(
        {
            "id": import_id,
            "sha256": uuid.uuid4().hex * 2,
            "filename": "focus.csv",
            "format": "csv",
            "billing_account_id": "acct-1",
            "billing_period_start": datetime(month_first.year, month_first.month, 1, tzinfo=UTC),
            "billing_period_end": now,
            "currency": "EUR",
            "rows": len(rows[LedgerEntry]),
            "allocated_rows": len(rows[LedgerEntry]),
            "unallocated_rows": 0,
            "billed_cost": total,
            "effective_cost": total,
            "unallocated_cost": Decimal(0),
            "summary": {},
            "imported_by": "fiona",
            "imported_at": now,
            "superseded_by": None,
        }
    )
    order = (Tenant, ApprovalRequest, ApprovalDecision, Run, RunStep, StepAttempt)
    with db.engine.begin() as conn:
        for model in (*order, *(m for m in rows if m not in order)):
            batch = rows[model]
            for start in range(0, len(batch), CHUNK):
                conn.execute(insert(model), batch[start : start + CHUNK])
        conn.execute(update(AuditHead).values(seq=seq))
    if db.engine.dialect.name == "postgresql":
        # What autovacuum and the checkpointer do within minutes of such a load, done
        # before the clock starts: without ANALYZE the planner believes the tables are
        # empty and nests loops over 10,000 rows; without VACUUM and CHECKPOINT they run
        # during the measurement and single requests wait on the disk behind them.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
            conn.execute(text("CHECKPOINT"))
    seeded.owner_tenant = seeded.active[len(seeded.active) // 2][0]
    counts = ", ".join(f"{m.__tablename__} {len(r):,}" for m, r in rows.items())
    print(f"  seeded: {counts}", flush=True)
    return seeded


# --- pages ---------------------------------------------------------------------------------


def get_pages(app: Any) -> list[str]:
    """Every GET route of WEB_PAGES the app serves (templates with {params})."""
    found: set[str] = set()
    for context in iter_route_contexts(app.routes):
        if "GET" in (context.methods or ()) and ("GET", context.path) in WEB_PAGES:
            found.add(context.path)
    return sorted(found)


def fill(template: str, tenant: tuple[str, str, str]) -> str | None:
    """``template`` with its parameters taken from a seeded tenant, or None if unknown."""
    tenant_id, name, run_id = tenant

    def value(match: re.Match[str]) -> str:
        param = match.group(1).split(":")[0]
        if param in ("ref", "name") or param.startswith("tenant"):
            return tenant_id if param.endswith("id") else name
        if param.startswith("run"):
            return run_id
        raise KeyError(param)

    try:
        return re.sub(r"\{([^}]+)\}", value, template)
    except KeyError:
        return None


def pct(samples: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def measure(store: str, n: int, samples: int) -> list[str]:
    tmp = Path(tempfile.mkdtemp())
    url, drop = make_store(store, tmp)
    db = Database(url)
    lines: list[str] = []
    try:
        upgrade(db.engine)
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        seeded = seed(db, n, now)
        print(f"  {store}: seeded {n:,} tenants in {time.perf_counter() - t0:.0f} s", flush=True)
        users: dict[Role, str] = {}
        with db.write() as s:
            for role in Role:
                username = f"bench-{role.value.replace('_', '-')}"
                tenant = seeded.owner_tenant if role is Role.TENANT_OWNER else None
                web_users.create_user(
                    s,
                    actor=SYSTEM,
                    username=username,
                    password=PASSWORD,
                    roles=[role],
                    tenant_id=tenant,
                )
                users[role] = username
        tokens = {
            role: bearer(
                mint_token(
                    db,
                    f"bench-api-{role.value}",
                    role.value,
                    tenant=seeded.owner_tenant if role is Role.TENANT_OWNER else None,
                )
            )
            for role in Role
        }
        settings = Settings(
            data_dir=tmp,
            log_json=False,
            log_level="WARNING",
            worker=WorkerSettings(in_process=False),
        )
        app = create_app(settings, db=db)
        heap.settle()  # as `tenantops serve` does before it serves
        pages = get_pages(app)
        timer = ServerTimer(app)
        owner = next(t for t in seeded.active if t[0] == seeded.owner_tenant)
        other = seeded.active[len(seeded.active) // 3]
        times: dict[str, dict[Role, list[float]]] = defaultdict(lambda: defaultdict(list))
        cpu: dict[str, list[float]] = defaultdict(list)
        # The slowest sample of each page: (wall, CPU, garbage collection) ms.
        slowest_sample: dict[str, tuple[float, float, float]] = {}
        statuses: dict[str, set[int]] = defaultdict(set)
        skipped: list[str] = []
        for role in Role:
            # A page that fails is a 500 in the table, not the end of the run.
            with TestClient(
                timer,  # type: ignore[arg-type]
                base_url="http://127.0.0.1",
                raise_server_exceptions=False,
            ) as client:
                client.get("/login")
                r = client.post(
                    "/login",
                    data={
                        "username": users[role],
                        "password": PASSWORD,
                        "csrf_token": client.cookies["tenantops_login_csrf"],
                    },
                    follow_redirects=False,
                )
                assert r.status_code == 303, r.text
                # A tenant owner looks at their own tenant; staff at some tenant.
                seen = owner if role is Role.TENANT_OWNER else other
                urls: list[tuple[str, str, dict[str, str]]] = []
                for template in pages:
                    url = fill(template, seen)
                    if url is None:
                        if template not in skipped:
                            skipped.append(template)
                        continue
                    urls.append((template, url, {}))
                urls += [
                    (
                        "/?tier=gold&sort=-activation_seconds",
                        "/?tier=gold&sort=-activation_seconds",
                        {},
                    ),
                    ("GET /api/v1/kpis", "/api/v1/kpis", tokens[role]),
                    ("GET /api/v1/kpis?limit=200", "/api/v1/kpis?limit=200", tokens[role]),
                ]
                for label, url, headers in urls:
                    for k in range(samples + 1):
                        try:
                            response = client.get(url, headers=headers, follow_redirects=False)
                        except Streaming:
                            timer.streamed = True
                        if timer.streamed:
                            skipped.append(f"{label} (streams: not timed)")
                            break
                        statuses[label].add(response.status_code)
                        if k:  # the first one warms the caches up
                            times[label][role].append(timer.last_ms)
                            cpu[label].append(timer.last_cpu_ms)
                            sample = (timer.last_ms, timer.last_cpu_ms, timer.last_gc_ms)
                            slowest_sample[label] = max(slowest_sample.get(label, sample), sample)
        lines.append(f"\n{store}, {n:,} tenants, {samples} samples x {len(Role)} roles per page")
        head = ("page", "status", "p50 ms", "p99 ms", "CPU p50", "max ms", "its CPU", "its GC")
        lines.append(
            "{:42s} {:>8s} {:>8s} {:>8s} {:>8s} {:>8s} {:>8s} {:>8s}  slowest role".format(*head)
        )
        for label, by_role in times.items():
            every = [t for ts in by_role.values() for t in ts]
            slowest = max(by_role, key=lambda r: statistics_median(by_role[r]))
            worst, worst_cpu, worst_gc = slowest_sample[label]
            flag = "  OVER 200 ms" if pct(every, 99) > TARGET_MS else ""
            codes = ",".join(str(c) for c in sorted(statuses[label]))
            lines.append(
                f"{label:42s} {codes:>8s} {pct(every, 50):8.1f} {pct(every, 99):8.1f}"
                f" {pct(cpu[label], 50):8.1f} {worst:8.1f} {worst_cpu:8.1f} {worst_gc:8.1f}"
                f"  {slowest.value}{flag}"
            )
        for template in dict.fromkeys(skipped):
            lines.append(f"{template:42s} skipped: streams, or a parameter the bench cannot fill")
    finally:
        db.dispose()
        drop()
    return lines


def statistics_median(values: list[float]) -> float:
    return pct(values, 50)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tenants", type=int, default=10_000)
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--samples", type=int, default=5, help="timed requests per page and role")
    args = p.parse_args()
    report: list[str] = []
    for store in args.stores.split(","):
        lines = measure(store, args.tenants, args.samples)
        print("\n".join(lines), flush=True)
        report += lines
    print("\n".join(report))


if __name__ == "__main__":
    main()
