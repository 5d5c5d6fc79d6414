"""``runbooks test``: a runbook run once in a sandbox, with injected faults, and its verdict.

A step can be made to fail N times, to time out once after its effect, or to
be claimed by a worker that dies before recording; the run must still succeed,
each effect must happen once, and the dead worker's late result must be refused.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.kit.clock import set_clock
from tenantops.runbooks import engine, repository, spec, windows
from tenantops.runbooks.actions import Action, ActionContext, Registry, StepFailed, StepResult
from tenantops.runbooks.sandbox import (
    TESTER,
    ActionsFactory,
    Clock,
    Faults,
    drive,
    granted_inputs,
    inputs_for,
    sandbox,
    setup_tenant,
)
from tenantops.runbooks.spec import Loaded, Runbook
from tenantops.runbooks.worker import Worker

TIMEOUT_FAULT = "2s"  # a step made to time out gets this timeout (or its own, if shorter)


@dataclass
class StepOutcome:
    """What one step did in a test run."""

    name: str
    kind: str
    status: str
    attempts: list[str]
    executions: int
    error: str | None
    evidence: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


@dataclass
class RunbookTestReport:
    """The verdict of ``runbooks test``: PASS when the run succeeded despite the faults."""

    runbook: str
    version: str
    run_id: str
    status: str
    passed: bool
    tenant: str | None
    steps: list[StepOutcome]
    notes: list[str]


def _with_faults(loaded: Loaded, faults: Faults) -> Loaded:
    """A copy of the runbook whose timed-out steps have a short timeout; faults checked."""
    runbook = loaded.runbook
    names = {s.name: s for s in runbook.steps}
    for name in sorted(faults.steps()):
        if name not in names:
            raise Unprocessable(f"runbook {runbook.id} has no step {name!r} to inject a fault into")
        if names[name].action is None:
            raise Unprocessable(f"faults go into action steps; {name!r} is a {names[name].kind}")
    if not faults.timeout:
        return loaded
    document = runbook.model_dump(mode="json", exclude_none=True)
    for step in document["steps"]:
        if step["name"] in faults.timeout:
            own = spec.seconds(step.get("timeout", "5m"))
            step["timeout"] = (
                step["timeout"] if own < spec.seconds(TIMEOUT_FAULT) else TIMEOUT_FAULT
            )
    return Loaded(
        runbook=Runbook.model_validate(document),
        hash=spec.content_hash(document),
        source=loaded.source,
    )


@dataclass
class _Injector:
    """Wraps an action: fails, hangs or counts it as the faults say."""

    inner: Action
    faults: Faults
    executions: dict[str, int]
    failed: dict[str, int]
    timed_out: set[str]
    release: threading.Event

    def run(self, ctx: ActionContext) -> StepResult:
        step = ctx.step_name
        if self.failed.get(step, 0) < self.faults.fail.get(step, 0):
            self.failed[step] = self.failed.get(step, 0) + 1
            raise StepFailed(f"injected failure {self.failed[step]}/{self.faults.fail[step]}")
        self.executions[step] = self.executions.get(step, 0) + 1
        result = self.inner.run(ctx)
        if step in self.faults.timeout and step not in self.timed_out:
            # The effect happened; the worker gives up waiting and retries it.
            self.timed_out.add(step)
            self.release.wait(spec.seconds(TIMEOUT_FAULT) + 30)
        return result

    def apply(self, session: Session, ctx: ActionContext, result: StepResult) -> None:
        apply = getattr(self.inner, "apply", None)
        if apply is not None:
            apply(session, ctx, result)


def _closed_windows(db: Database, runbook: Runbook, clock: Clock, notes: list[str]) -> None:
    """Define each maintenance window the runbook (or one of the library's, which set up the
    sample tenant) names as closed now and open for an hour from the next full hour, every
    day (UTC): the windowed steps wait, and the clock jumps."""
    steps = [s for loaded in spec.load_library().values() for s in loaded.runbook.steps]
    names = sorted({s.window for s in [*runbook.steps, *steps] if s.window is not None})
    if not names:
        return
    opens = clock().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    hours = f"{opens:%H:%M}", f"{opens + timedelta(hours=1):%H:%M}"
    with db.write() as session:
        for name in names:
            windows.put_window(
                session,
                principal=TESTER,
                name=name,
                days=list(windows.DAYS),
                start=hours[0],
                end=hours[1],
                timezone="UTC",
                description="defined by `runbooks test`",
            )
    notes.append(
        f"maintenance window(s) {', '.join(names)} defined for the test as daily "
        f"{hours[0]}-{hours[1]} UTC, closed when the run starts"
    )


def run_runbook_test(
    loaded: Loaded,
    *,
    build: ActionsFactory,
    faults: Faults | None = None,
    inputs: dict[str, Any] | None = None,
    tenant_state: str | None = None,
    max_seconds: float = 300.0,
) -> RunbookTestReport:
    """Run a runbook once against a throwaway SQLite database and local drivers, with faults.

    Time is simulated: backoffs, timers and expired leases are jumped over, so a
    runbook with a 30-minute timer tests in seconds. Gates are approved by a
    tester holding the gate's role. ``crash`` makes a worker claim the step, run
    it and die before recording; its lease must expire, another worker reclaims
    the step (same idempotency key), and the dead worker's late result is refused.
    """
    faults = faults or Faults()
    loaded = _with_faults(loaded, faults)
    runbook = loaded.runbook
    clock = Clock()
    executions: dict[str, int] = {}
    failed: dict[str, int] = {}
    timed_out: set[str] = set()
    release = threading.Event()
    notes: list[str] = []
    step_notes: dict[str, list[str]] = {s.name: [] for s in runbook.steps}
    stale: list[engine.Claim] = []
    crashed: set[str] = set()
    set_clock(clock)
    try:
        with sandbox(build) as (db, real, checks):
            actions: Registry = {
                name: _Injector(action, faults, executions, failed, timed_out, release)
                for name, action in real.items()
            }
            _closed_windows(db, runbook, clock, notes)
            tenant = setup_tenant(db, real, clock, runbook, tenant_state, notes)
            given = granted_inputs(db, runbook, inputs or {}, tenant)
            with db.write() as session:
                run_id = engine.start_run(
                    session,
                    loaded=loaded,
                    actor=TESTER,
                    tenant_id=tenant.id if tenant else None,
                    inputs=inputs_for(runbook, given, tenant),
                ).id
            # Step by step (no chaining), so a crash can be injected before any step.
            worker = Worker(
                db,
                actions,
                name="runbooks-test-worker",
                concurrency=1,
                poll_seconds=0.01,
                chain=False,
            )
            try:
                drive(
                    db,
                    worker,
                    run_id,
                    clock,
                    faults,
                    crashed,
                    stale,
                    step_notes,
                    notes,
                    max_seconds,
                    checks,
                )
            finally:
                release.set()
                worker.stop(timeout=1)
            fenced_ok = True
            for claim in stale:
                with db.write() as session:
                    accepted = engine.complete(
                        session, claim=claim, result=StepResult(output={"stale": True})
                    )
                if accepted is None:
                    step_notes[claim.step_name].append(
                        "the crashed worker's late result was refused (fenced)"
                    )
                else:  # pragma: no cover - the engine's fencing is broken
                    fenced_ok = False
                    step_notes[claim.step_name].append(
                        "the crashed worker's late result was ACCEPTED"
                    )
            with db.write() as session:
                for breach in engine.check_deadlines(session):
                    where = f"step {breach.step}" if breach.step else "run"
                    at = f"{breach.deadline:%H:%M:%S}"
                    notes.append(f"SLA of the {where} breached (simulated time) at {at}")
            with db.read() as session:
                run = engine.get_run(session, run_id)
                rows = engine.steps_of(session, run_id)
                tries = repository.attempts(session, [r.id for r in rows])
                status, error = run.status, run.error
    finally:
        set_clock(None)
    outcomes = []
    for row in rows:
        mine = step_notes[row.name]
        if row.name in faults.fail:
            mine.insert(
                0, f"failed {failed.get(row.name, 0)} of {faults.fail[row.name]} times on purpose"
            )
        if row.name in timed_out:
            mine.insert(0, "timed out once on purpose (after its effect)")
        outcomes.append(
            StepOutcome(
                name=row.name,
                kind=row.kind,
                status=row.status,
                attempts=[a.status for a in tries[row.id]],
                executions=executions.get(row.name, 0),
                error=row.error,
                evidence=row.evidence,
                notes=mine,
            )
        )
    missed = [
        f"fault on {name} never fired"
        for name in sorted(faults.steps())
        if name not in crashed | timed_out
        and failed.get(name, 0) < faults.fail.get(name, 0)
        and status == "succeeded"
    ]
    if error:
        notes.append(f"run {status}: {error}")
    notes.extend(missed)
    return RunbookTestReport(
        runbook=runbook.id,
        version=runbook.version,
        run_id=run_id,
        status=status,
        passed=status == "succeeded" and fenced_ok and not missed,
        tenant=tenant.name if tenant else None,
        steps=outcomes,
        notes=notes,
    )
