"""Crash safety with the real ``tenant-onboarding`` runbook and the real local drivers.

Two hundred tenants are requested (``tenants.service.create_tenant`` starts
each onboarding run) and approved by governance and by security, two
principals (``decide_onboarding`` opens the gate): half before any worker
runs, so the signal waits for the gate, half while the workers run, paced
by the kills (a few approvals per kill, so a fast engine cannot finish the
runs before the kills have landed). Several
worker processes (``python -m tests.runbooks.crash_worker`` with the actions of
``tenantops.wiring.build_actions``: a real bare git repository, identity,
secrets, access and the notification outbox in the database, health checks
over real HTTP) drive the runs, and one of them, picked at random, is
SIGKILLed after a random delay and restarted, over and over, until every run
has finished. A ``tenantops serve`` subprocess on the same database answers
the health checks (``TENANTOPS_HEALTH__BASE_URL`` points at its
``/probe/tenants/{tenant}``).

The shipped runbook's step timeouts are minutes long, and a lease lasts the
timeout plus the grace; a killed worker is restarted under its own name with
``--take-over``, which ends the leases that name still holds, so its steps are
reclaimed at once through the engine's reclaim path (see crash_worker).

At the end every run succeeded and every tenant is ``active``; every action
step was recorded complete once (one succeeded attempt, one
``run.step.succeeded`` audit entry); each effect was applied once, counted by
the drivers' own logs, not by the steps: one git commit per gitops
idempotency key (git enforces no uniqueness, so a change committed again by a
re-run would show as a second commit), one effect row per identity, secrets
and health key, one outbox message per notify key, and no key the steps did
not give (the database drivers write an effect and its log row in one
transaction keyed by the idempotency key, so a repeat would have to come
under another key, or add grants the test counts); the audit chain verifies.
The kills land between steps and inside them, including after a driver
applied its effect and before the step was recorded: the re-run then finds
the effect already applied (``found_on_rerun``, asserted non-zero).

Time, 200 runs per store, measured on the shared 2-core development machine
while other sessions ran the suite (this test included) and benchmarks, load
average 6-14: SQLite 79-104 s, PostgreSQL 167-221 s. The CPU it needs (test,
workers, server; PostgreSQL's backends not counted) is about 90 s per store,
so on two otherwise idle cores both should fit in about a minute each.
``TENANTOPS_CRASH_ONBOARDING_RUNS`` sets another count.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.drivers.access.local import LocalQueueAccess
from tenantops.drivers.gitops.local import LocalGitRepo
from tenantops.drivers.gitops.port import IDEMPOTENCY_TRAILER
from tenantops.drivers.health.models import HealthResult
from tenantops.drivers.identity.local import LocalIdentity
from tenantops.drivers.identity.models import IdentityEffect, IdentityMember
from tenantops.drivers.notify.local import OutboxNotifier
from tenantops.drivers.secrets.local import LocalSecrets
from tenantops.drivers.secrets.models import SecretEffect
from tenantops.kit.clock import as_utc
from tenantops.notifications.models import OutboxMessage
from tenantops.runbooks import spec
from tenantops.runbooks.models import Run, RunStep, StepAttempt
from tenantops.tenants import service as tenants
from tenantops.tenants.models import Tenant
from tenantops.tenants.schemas import ApprovalCreate, TenantCreate
from tests.runbooks.crash_worker import spawn, stop
from tests.servers import serve_process, tenantops_env

pytestmark = pytest.mark.slow

RUNS = int(os.environ.get("TENANTOPS_CRASH_ONBOARDING_RUNS", "200"))
SEED = 20_302
WORKERS = 3
WORKER_ARGS = (
    "--actions",
    "tests.runbooks.crash_worker:onboarding_actions",
    "--take-over",
    "--concurrency",
    "6",
    "--poll",
    "0.05",
    "--lease-grace",
    "1.5",
)
BUDGET_SECONDS = 420.0  # a bound on a loaded machine, not a target (see above)
# Seconds from a restart to the next kill, uniformly at random.
KILL_EVERY = (0.2, 1.5)
MAX_KILLS = 120
# The late tenants are approved at most this many per kill so far: however fast
# the engine drains the runs, the last ones cannot finish before
# len(late) / APPROVALS_PER_KILL kills have landed among busy workers.
APPROVALS_PER_KILL = 8

AMY = Principal("amy", frozenset({Role.ACCOUNT_MANAGER}))
GUS = Principal("gus", frozenset({Role.GOVERNANCE}))
SUE = Principal("sue", frozenset({Role.SECURITY}))
ONBOARDING = spec.get(spec.shipped(), "tenant-onboarding").runbook
ACTION_STEPS = [s.name for s in ONBOARDING.steps if s.action is not None]
GATES = [s.name for s in ONBOARDING.steps if s.gate is not None]
# Which step's idempotency key each driver's effect log holds.
GITOPS_STEPS = ["gitops"]
IDENTITY_STEPS = ["identity"]
SECRETS_STEPS = ["secret-store"]
HEALTH_STEPS = ["health-check", "synthetic-test", "access-review"]
NOTIFY_STEPS = ["handover"]
TRAILER = re.compile(rf"^{re.escape(IDEMPOTENCY_TRAILER)}: (.+)$", re.MULTILINE)


# Tenants, requested and approved through the service --------------------------------------


def request(db: Database, i: int) -> str:
    name = f"crash-{i:03d}"
    with db.write() as s:
        tenants.create_tenant(
            s,
            principal=AMY,
            data=TenantCreate(
                name=name,
                display_name=f"Crash tenant {i}",
                business_owner=f"owner{i}@example.com",
                compliance_classification="internal",
                region="eu-central-1",
                tier="standard",
                monthly_budget=100,
                currency="EUR",
                contacts=[f"ops{i}@example.com", f"dev{i}@example.com"],
                ticket_ref=f"RITM{i:07d}",
            ),
        )
    return name


def approve(db: Database, name: str) -> None:
    for who, role in ((GUS, "governance"), (SUE, "security")):
        with db.write() as s:
            tenants.decide_onboarding(
                s, principal=who, ref=name, data=ApprovalCreate(role=role, decision="approve")
            )


@dataclass
class Approver:
    """Approves tenants on a thread of its own while the workers run (and are killed)."""

    db: Database
    names: list[str]
    kills: Callable[[], int]  # how many kills have landed so far (paces the approvals)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def _run(self) -> None:
        try:
            for i, name in enumerate(self.names):
                while self.kills() < i // APPROVALS_PER_KILL:
                    time.sleep(0.05)
                approve(self.db, name)
        except BaseException as exc:  # handed to the test, which re-raises it
            self.error = exc

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="approver", daemon=True)
        self.thread.start()

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(60)
        assert not self.thread.is_alive(), "approvals did not finish"
        if self.error is not None:
            raise self.error


# The fleet of worker processes, killed and restarted -----------------------------------------


@dataclass
class Fleet:
    db_url: str
    env: dict[str, str]
    scratch: Path
    names: list[str]
    procs: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    kills: int = 0
    restart_seconds: list[float] = field(default_factory=list)

    def start(self, name: str) -> None:
        began = time.monotonic()
        self.procs[name] = spawn(
            self.db_url, self.scratch, "--name", name, *WORKER_ARGS, env=self.env
        )
        self.restart_seconds.append(time.monotonic() - began)

    def kill_and_restart(self, name: str) -> None:
        proc = self.procs.pop(name)
        assert proc.poll() is None, f"worker {name} died on its own (exit {proc.returncode})"
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self.kills += 1
        self.start(name)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            stop(proc)


@contextmanager
def fleet(db_url: str, env: dict[str, str], scratch: Path, size: int) -> Iterator[Fleet]:
    f = Fleet(db_url, env, scratch, [f"crash-w{i}" for i in range(size)])
    try:
        for name in f.names:
            f.start(name)
        yield f
    finally:
        f.stop_all()


def unfinished(db: Database) -> int:
    with db.read() as s:
        return s.execute(
            select(func.count()).select_from(Run).where(Run.finished_at.is_(None))
        ).scalar_one()


def crash_until_done(db: Database, f: Fleet, rng: random.Random, approver: Approver) -> None:
    """Kill a random worker after a random delay, restart it; until every run has finished."""
    give_up = time.monotonic() + BUDGET_SECONDS
    next_kill = time.monotonic() + rng.uniform(*KILL_EVERY)
    while time.monotonic() < give_up:
        time.sleep(0.25)
        if not unfinished(db) and approver.thread is not None and not approver.thread.is_alive():
            return
        if time.monotonic() >= next_kill and f.kills < MAX_KILLS:
            f.kill_and_restart(rng.choice(f.names))
            next_kill = time.monotonic() + rng.uniform(*KILL_EVERY)


# What happened, read back from the engine and the drivers' effect logs ------------------------


@dataclass
class Seen:
    keys: dict[tuple[str, str], str]  # (run id, step) -> idempotency key
    succeeded_attempts: Counter[tuple[str, str]]
    audited: Counter[tuple[str, str]]
    lost: Counter[str]  # step name -> attempts a killed worker left behind
    found_on_rerun: int  # effects a killed attempt applied that its re-run found


def step_keys(db: Database) -> dict[tuple[str, str], str]:
    with db.read() as s:
        return {
            (run_id, name): key
            for run_id, name, key in s.execute(
                select(RunStep.run_id, RunStep.name, RunStep.idempotency_key)
            )
        }


def effect_times(db: Database) -> dict[str, datetime]:
    """When each idempotency key's effect was applied, per the drivers' own tables."""
    with db.read() as s:
        rows = [
            *s.execute(select(IdentityEffect.idempotency_key, IdentityEffect.at)),
            *s.execute(select(SecretEffect.idempotency_key, SecretEffect.at)),
            *s.execute(select(HealthResult.idempotency_key, HealthResult.at)),
            *s.execute(select(OutboxMessage.idempotency_key, OutboxMessage.created_at)),
        ]
    return {key: as_utc(at) for key, at in rows}


def observe(db: Database) -> Seen:
    keys = step_keys(db)
    applied_at = effect_times(db)
    with db.read() as s:
        attempts = s.execute(
            select(
                RunStep.run_id,
                RunStep.name,
                RunStep.idempotency_key,
                StepAttempt.status,
                StepAttempt.started_at,
            ).join(StepAttempt, StepAttempt.step_id == RunStep.id)
        ).all()
        audited = Counter(
            (e.detail["run_id"], e.detail["step"])
            for e in s.execute(
                select(AuditEntry).where(AuditEntry.action == "run.step.succeeded")
            ).scalars()
        )
    succeeded_start = {
        (run_id, name): as_utc(started)
        for run_id, name, _key, status, started in attempts
        if status == "succeeded"
    }
    lost: Counter[str] = Counter()
    found = 0
    for run_id, name, key, status, _started in attempts:
        if status not in ("lost", "running"):
            continue
        lost[name] += 1
        done = succeeded_start.get((run_id, name))
        if key in applied_at and done is not None and applied_at[key] < done:
            found += 1  # applied before the attempt that succeeded began: by the killed one
    return Seen(
        keys=keys,
        succeeded_attempts=Counter(
            (run_id, name) for run_id, name, _k, status, _s in attempts if status == "succeeded"
        ),
        audited=audited,
        lost=lost,
        found_on_rerun=found,
    )


def keys_of(seen: Seen, run_ids: list[str], steps: list[str]) -> set[str]:
    return {seen.keys[(r, step)] for r in run_ids for step in steps}


def git_keys(repo: LocalGitRepo) -> Counter[str]:
    """Idempotency key -> how many commits of the branch carry it."""
    return Counter(key.strip() for message in repo.log() for key in TRAILER.findall(message))


# The test ------------------------------------------------------------------------------------


def test_killed_workers_onboard_every_tenant_with_every_effect_once(
    db: Database, tmp_path: Path
) -> None:
    began = time.monotonic()
    data = tmp_path / "data"
    data.mkdir()
    gitops = tmp_path / "gitops.git"
    settings = {
        "database_url": db.url,
        "data_dir": str(data),
        "gitops__repo_path": str(gitops),
        "worker__in_process": "false",
        "bootstrap_admin": "false",
        "log_json": "false",
        "log_level": "WARNING",
    }
    names = [request(db, i) for i in range(RUNS)]
    early, late = names[: RUNS // 2], names[RUNS // 2 :]
    for name in early:
        approve(db, name)
    setup = time.monotonic() - began

    with serve_process(tenantops_env(**settings), tmp_path / "serve.log") as url:
        worker_env = tenantops_env(**settings, health__base_url=f"{url}/probe/tenants/{{tenant}}")
        driven = time.monotonic()
        with fleet(db.url, worker_env, tmp_path / "unused-effects", WORKERS) as f:
            approver = Approver(db, late, kills=lambda: f.kills)
            approver.start()
            crash_until_done(db, f, random.Random(SEED), approver)
            approver.join()
        drive = time.monotonic() - driven

    seen = observe(db)
    with db.read() as s:
        runs = {r.id: (r.status, r.tenant_id, r.error) for r in s.execute(select(Run)).scalars()}
        states = Counter(s.execute(select(Tenant.state)).scalars())
        members = Counter(s.execute(select(IdentityMember.tenant_id)).scalars())
        gates = Counter(s.execute(select(RunStep.status).where(RunStep.name.in_(GATES))).scalars())
        chain = audit.verify(s)
    run_ids = sorted(runs)
    expected = {(r, step) for r in run_ids for step in ACTION_STEPS}
    commits = git_keys(LocalGitRepo(gitops))
    with db.read() as s:
        identity_keys = set(s.execute(select(IdentityEffect.idempotency_key)).scalars())
        secret_keys = set(s.execute(select(SecretEffect.idempotency_key)).scalars())
        health_keys = set(s.execute(select(HealthResult.idempotency_key)).scalars())
        outbox_keys = Counter(s.execute(select(OutboxMessage.idempotency_key)).scalars())
    report = (
        f"{RUNS} runs, {f.kills} kills, setup {setup:.1f}s, driven {drive:.1f}s, "
        f"total {time.monotonic() - began:.1f}s, worker restart "
        f"{sum(f.restart_seconds) / len(f.restart_seconds):.2f}s avg, "
        f"lost attempts {dict(seen.lost)}, effects found on re-run {seen.found_on_rerun}"
    )
    print(report)

    # Every run succeeded, every tenant is active.
    failed = {r: v for r, v in runs.items() if v[0] != "succeeded"}
    assert len(runs) == RUNS, report
    assert not failed, (report, list(failed.items())[:5])
    assert states == {"active": RUNS}, report
    assert gates == {"succeeded": RUNS * len(GATES)}
    # No step recorded complete twice.
    assert set(seen.succeeded_attempts) == expected
    assert max(seen.succeeded_attempts.values()) == 1, "a step was recorded complete twice"
    assert set(seen.audited) == expected
    assert max(seen.audited.values()) == 1, "a step was audited complete twice"
    # No effect applied twice, by the drivers' own effect logs.
    assert set(commits) == keys_of(seen, run_ids, GITOPS_STEPS), "a gitops commit is missing"
    assert max(commits.values()) == 1, "a gitops change was committed twice"
    assert identity_keys == keys_of(seen, run_ids, IDENTITY_STEPS)
    assert LocalIdentity(db).effect_count() == RUNS
    assert set(members.values()) == {3}, "a grant is missing or extra (owner + two contacts)"
    assert secret_keys == keys_of(seen, run_ids, SECRETS_STEPS)
    assert LocalSecrets(db).effect_count() == RUNS
    assert health_keys == keys_of(seen, run_ids, HEALTH_STEPS)
    assert set(outbox_keys) == keys_of(seen, run_ids, NOTIFY_STEPS)
    assert max(outbox_keys.values()) == 1
    assert OutboxNotifier(db).effect_count() == RUNS, "a message was sent twice (or not at all)"
    assert LocalQueueAccess(db).effect_count() == 0  # onboarding pauses no queue
    assert chain.ok, chain
    # The kills did land inside steps (the attempts they cut short were run again).
    assert f.kills >= 10, report
    assert sum(seen.lost.values()) > 0, report
    assert seen.found_on_rerun > 0, report
