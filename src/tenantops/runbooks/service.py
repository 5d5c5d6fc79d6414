"""Runs and runbooks as the API and CLI see them: scoped reads, gate decisions, cancel, retry.

The engine owns the rules of a run (segregation of duties on gates, what can be
cancelled or retried); this module adds who may see which run — a tenant owner
sees only the runs of their own tenant, and a run of another tenant is a 404,
exactly like a tenant that does not exist — and shapes rows for the API.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tenantops.auth.principal import SYSTEM, Principal, Role
from tenantops.db import Database
from tenantops.errors import NotFound, Unprocessable
from tenantops.kit.clock import as_utc, set_clock, utcnow
from tenantops.migrations import upgrade
from tenantops.runbooks import engine, repository, spec
from tenantops.runbooks.actions import Action, ActionContext, Registry, StepFailed, StepResult
from tenantops.runbooks.models import Run, RunStep, StepAttempt
from tenantops.runbooks.schemas import (
    AttemptRead,
    GateDecisionCreate,
    GateInfo,
    RunbookRead,
    RunbookSummary,
    RunPage,
    RunRead,
    RunSummary,
    SlaStatus,
    StepRead,
)
from tenantops.runbooks.spec import Loaded, Runbook
from tenantops.runbooks.worker import Worker
from tenantops.tenants import lifecycle
from tenantops.tenants import service as tenants
from tenantops.tenants.lifecycle import TenantEvent
from tenantops.tenants.schemas import (
    ApprovalCreate,
    ComplianceClass,
    LifecycleEventCreate,
    OffboardRequest,
    ReactivationDecisionCreate,
    ReactivationRequestCreate,
    SuspendRequest,
    TenantCreate,
    TenantRead,
)


def sla_status(
    deadline: datetime | None,
    breached_at: datetime | None,
    finished_at: datetime | None,
    now: datetime,
) -> SlaStatus | None:
    """The SLA clock of a run or step; a deadline passed counts even before it is recorded."""
    if deadline is None:
        return None
    deadline = as_utc(deadline)
    end = as_utc(finished_at) if finished_at is not None else None
    return SlaStatus(
        deadline=deadline,
        breached=breached_at is not None or (end or now) > deadline,
        breached_at=as_utc(breached_at) if breached_at is not None else None,
        remaining_seconds=None if end is not None else round((deadline - now).total_seconds(), 3),
    )


def _own_tenant_id(session: Session, principal: Principal) -> str | None:
    """The id of the one tenant a tenant-scoped principal may see; ``None`` if none exists."""
    if principal.tenant is None:
        return None
    try:
        return tenants.get_tenant(session, principal=principal, ref=principal.tenant).id
    except NotFound:
        return None


def _visible(session: Session, principal: Principal, run_id: str) -> Run:
    # A tenant owner asking for a run of another tenant (or of no tenant) learns
    # nothing, not even that it exists: the same 404 as a run that does not.
    run = repository.get(session, run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r}")
    if principal.tenant_scoped and (
        run.tenant_id is None or run.tenant_id != _own_tenant_id(session, principal)
    ):
        raise NotFound(f"no run {run_id!r}")
    return run


def _tenant_names(session: Session, tenant_ids: set[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for tenant_id in tenant_ids:
        try:
            names[tenant_id] = tenants.get_tenant(session, principal=SYSTEM, ref=tenant_id).name
        except NotFound:
            continue
    return names


def _summary(
    run: Run, steps: Sequence[RunStep], tenant_name: str | None, now: datetime
) -> dict[str, Any]:
    current = next((s.name for s in steps if s.status != "succeeded"), None)
    return {
        "id": run.id,
        "runbook_id": run.runbook_id,
        "runbook_version": run.runbook_version,
        "runbook_hash": run.runbook_hash,
        "tenant_id": run.tenant_id,
        "tenant_name": tenant_name,
        "status": run.status,
        "started_by": run.started_by,
        "created_at": as_utc(run.created_at),
        "updated_at": as_utc(run.updated_at),
        "finished_at": as_utc(run.finished_at) if run.finished_at else None,
        "error": run.error,
        "current_step": current if run.status != "succeeded" else None,
        "steps_done": sum(1 for s in steps if s.status == "succeeded"),
        "steps_total": len(steps),
        "sla": sla_status(run.sla_deadline, run.sla_breached_at, run.finished_at, now),
    }


def _step(row: RunStep, runbook: Runbook, attempts: list[StepAttempt], now: datetime) -> StepRead:
    spec = runbook.step(row.name)
    started = as_utc(row.started_at) if row.started_at else None
    finished = as_utc(row.finished_at) if row.finished_at else None
    gate = spec.gate
    return StepRead.model_validate(
        {
            "name": row.name,
            "title": spec.title,
            "position": row.position,
            "kind": row.kind,
            "action": spec.action,
            "gate": GateInfo(roles=gate.roles, prompt=gate.prompt, signal=gate.signal)
            if gate
            else None,
            "status": row.status,
            "attempt": row.attempt,
            "failures": row.failures,
            "max_attempts": row.max_attempts,
            "wake_at": as_utc(row.wake_at) if row.wake_at else None,
            "lease_owner": row.lease_owner,
            "lease_expires_at": as_utc(row.lease_expires_at) if row.lease_expires_at else None,
            "idempotency_key": row.idempotency_key,
            "inputs": row.inputs,
            "output": row.output,
            "evidence": row.evidence,
            "error": row.error,
            "decided_by": row.decided_by,
            "started_at": started,
            "finished_at": finished,
            "duration_seconds": (finished - started).total_seconds()
            if started and finished
            else None,
            "sla": sla_status(row.sla_deadline, row.sla_breached_at, row.finished_at, now),
            "attempts": [AttemptRead.model_validate(a) for a in attempts],
        }
    )


def read_run(session: Session, *, principal: Principal, run_id: str) -> RunRead:
    """A run the principal may see, with every step, attempt and SLA clock."""
    run = _visible(session, principal, run_id)
    now = utcnow()
    rows = repository.steps(session, run.id)
    tries = repository.attempts(session, [r.id for r in rows])
    runbook = engine.spec_of(run)
    names = _tenant_names(session, {run.tenant_id} if run.tenant_id else set())
    return RunRead.model_validate(
        {
            **_summary(run, rows, names.get(run.tenant_id or ""), now),
            "inputs": run.inputs,
            "steps": [_step(r, runbook, tries[r.id], now) for r in rows],
        }
    )


def list_runs(
    session: Session,
    *,
    principal: Principal,
    tenant: str | None,
    runbook_id: str | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> RunPage:
    """A page of runs the principal may see, newest first; ``tenant`` is an id or a name."""
    tenant_id = None
    if tenant is not None:
        tenant_id = tenants.get_tenant(session, principal=principal, ref=tenant).id
    elif principal.tenant_scoped:
        tenant_id = _own_tenant_id(session, principal)
        if tenant_id is None:
            return RunPage(items=[], next_cursor=None)
    after = repository.decode_cursor(cursor) if cursor else None
    filters = repository.RunFilter(tenant_id=tenant_id, runbook_id=runbook_id, status=status)
    runs, next_cursor = repository.list_page(session, filters, after_id=after, limit=limit)
    steps = repository.step_progress(session, [r.id for r in runs])
    names = _tenant_names(session, {r.tenant_id for r in runs if r.tenant_id})
    now = utcnow()
    items = [
        RunSummary.model_validate(_summary(r, steps[r.id], names.get(r.tenant_id or ""), now))
        for r in runs
    ]
    return RunPage(items=items, next_cursor=next_cursor)


def decide_gate(
    session: Session,
    *,
    principal: Principal,
    run_id: str,
    step: str,
    data: GateDecisionCreate,
) -> RunRead:
    """Approve or reject a gate; the engine enforces its roles and segregation of duties."""
    _visible(session, principal, run_id)
    engine.signal(
        session,
        run_id=run_id,
        step_name=step,
        decision=data.decision,
        principal=principal,
        comment=data.comment,
    )
    session.flush()
    return read_run(session, principal=principal, run_id=run_id)


def cancel_run(session: Session, *, principal: Principal, run_id: str, reason: str) -> RunRead:
    """Cancel an unfinished run; a worker still running one of its steps is fenced off."""
    _visible(session, principal, run_id)
    engine.cancel(session, run_id=run_id, principal=principal, reason=reason)
    session.flush()
    return read_run(session, principal=principal, run_id=run_id)


def retry_run(session: Session, *, principal: Principal, run_id: str) -> RunRead:
    """Resume a failed run from its failed step."""
    _visible(session, principal, run_id)
    engine.retry(session, run_id=run_id, principal=principal)
    session.flush()
    return read_run(session, principal=principal, run_id=run_id)


def runbook_summary(loaded: Loaded) -> RunbookSummary:
    rb = loaded.runbook
    return RunbookSummary(
        id=rb.id,
        version=rb.version,
        title=rb.title,
        kind=rb.kind,
        description=rb.description,
        tenant=rb.tenant,
        hash=loaded.hash,
        source=loaded.source,
        steps=len(rb.steps),
    )


def runbook_read(loaded: Loaded) -> RunbookRead:
    return RunbookRead(
        **runbook_summary(loaded).model_dump(),
        document=loaded.runbook.model_dump(mode="json", exclude_none=True),
    )


# --- runbooks test: a runbook against throwaway local drivers, with faults ----

# Installs the actions (drivers) for a throwaway data directory and database, and
# takes down whatever it started for them (e.g. the server behind the health probe).
ActionsFactory = Callable[[Path, Database], AbstractContextManager[Registry]]
TIMEOUT_FAULT = "2s"  # a step made to time out gets this timeout (or its own, if shorter)
TESTER = Principal("runbooks-test:operator", frozenset({Role.ADMIN, Role.OPS_ENGINEER}))
SAMPLE_INPUTS: dict[str, Any] = {
    "string": "sample",
    "integer": 1,
    "number": 1,
    "boolean": True,
    "object": {},
}


@dataclass(frozen=True)
class Faults:
    """Faults to inject, by step name."""

    fail: dict[str, int] = field(default_factory=dict)
    timeout: frozenset[str] = frozenset()
    crash: frozenset[str] = frozenset()

    def steps(self) -> set[str]:
        return set(self.fail) | set(self.timeout) | set(self.crash)


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


@dataclass
class PlannedStep:
    name: str
    title: str | None
    kind: str
    what: str
    timeout: str
    attempts: int
    params: Any
    unresolved: str | None = None
    preview: dict[str, Any] | None = None
    preview_error: str | None = None


@dataclass
class Plan:
    """What ``runbooks test --dry-run`` prints: the steps, rendered for a sample tenant."""

    runbook: str
    version: str
    hash: str
    tenant: dict[str, Any] | None
    inputs: dict[str, Any]
    steps: list[PlannedStep]


def resolve_runbook(ref: str) -> Loaded:
    """A runbook by library id, or from a YAML file path."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise NotFound(f"no runbook file {ref!r}")
        return spec.parse(path.read_text(encoding="utf-8"), source=str(path))
    return spec.get(spec.load_library(), ref)


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


class _Clock:
    """Wall time plus an offset the harness advances instead of waiting (backoffs, leases)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def jump_to(self, when: datetime) -> None:
        ahead = as_utc(when) - self()
        if ahead > timedelta(0):
            self.offset += ahead + timedelta(milliseconds=1)


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


_SAMPLE_TENANT = TenantCreate(
    name="sample-tenant",
    display_name="Sample Tenant",
    business_owner="owner@sample.example",
    compliance_classification=ComplianceClass.INTERNAL,
    region="eu-central-1",
    tier="standard",
    monthly_budget=Decimal("1000"),
    currency="EUR",
    contacts=["ops@sample.example"],
    ticket_ref="RITM0000001",
)
# How far a sample tenant is taken, through the tenant service as people would,
# before the runbook under test runs. Every runbook the service starts on the way
# runs to completion, except those the last stage starts: the one under test
# replaces them.
TENANT_STAGES = ("requested", "approved", "active", "suspended", "reactivated", "offboarding")
STAGE_OF_RUNBOOK = {
    "tenant-onboarding": "approved",
    "tenant-suspension": "suspended",
    "tenant-reactivation": "reactivated",
    "tenant-offboarding": "offboarding",
}


def _as(subject: str, role: Role) -> Principal:
    return Principal(f"runbooks-test:{subject}", frozenset({role}))


def tenant_stage_for(runbook: Runbook) -> str:
    """Where a runbook's sample tenant should be: known runbooks, else its first transition."""
    if runbook.id in STAGE_OF_RUNBOOK:
        return STAGE_OF_RUNBOOK[runbook.id]
    for step in runbook.steps:
        event = step.params.get("event") if step.action == "tenant.transition" else None
        if isinstance(event, str) and event in TenantEvent.__members__.values():
            for state, on in lifecycle.TRANSITIONS:
                if on == event and state.value in TENANT_STAGES:
                    return state.value
    return "active"


def _stage_calls(stage: str) -> list[Callable[[Session, str], object]]:
    """The tenant service calls that take a new tenant to ``stage``, in order."""
    am, ops, gov = (
        _as("account-manager", Role.ACCOUNT_MANAGER),
        _as("ops", Role.OPS_ENGINEER),
        _as("governance", Role.GOVERNANCE),
    )

    def approve(session: Session, ref: str) -> None:
        for role in ("governance", "security"):
            tenants.decide_onboarding(
                session,
                principal=_as(role, Role(role)),
                ref=ref,
                data=ApprovalCreate.model_validate({"role": role, "decision": "approve"}),
            )

    def activate(session: Session, ref: str) -> None:
        # Reached by the onboarding run when the library has one; by hand otherwise.
        tenant = tenants.get_tenant(session, principal=SYSTEM, ref=ref)
        events = {"approved": 0, "provisioning": 1, "verifying": 2}
        if tenant.state not in events:
            return
        for event, who in [
            ("start_provisioning", ops),
            ("provisioned", ops),
            ("verified", _as("qa", Role.QA)),
        ][events[tenant.state] :]:
            tenants.record_step(
                session,
                principal=who,
                ref=ref,
                data=LifecycleEventCreate.model_validate({"event": event}),
            )

    def suspend(session: Session, ref: str) -> None:
        data = SuspendRequest(reason="runbooks test", incident_ref="INC-TEST")
        tenants.suspend_tenant(session, principal=ops, ref=ref, data=data)

    def reactivate(session: Session, ref: str) -> None:
        asked = tenants.request_reactivation(
            session, principal=am, ref=ref, data=ReactivationRequestCreate(reason="runbooks test")
        )
        tenants.decide_reactivation(
            session,
            principal=gov,
            ref=ref,
            request_id=asked.id,
            data=ReactivationDecisionCreate(decision="approve"),
        )

    def offboard(session: Session, ref: str) -> None:
        data = OffboardRequest(reason="runbooks test", ticket_ref="RITM-TEST")
        tenants.offboard_tenant(session, principal=am, ref=ref, data=data)

    calls: dict[str, list[Callable[[Session, str], object]]] = {
        "requested": [],
        "approved": [approve],
        "active": [approve, activate],
        "suspended": [approve, activate, suspend],
        "reactivated": [approve, activate, suspend, reactivate],
        "offboarding": [approve, activate, offboard],
    }
    return calls[stage]


def _sample_tenant(
    db: Database, worker: Worker, clock: _Clock, stage: str, notes: list[str]
) -> TenantRead:
    """A tenant taken to ``stage`` in the throwaway database, with its runbooks run."""
    if stage not in TENANT_STAGES:
        raise Unprocessable(f"a sample tenant can be {', '.join(TENANT_STAGES)}; not {stage!r}")
    with db.write() as session:
        am = _as("account-manager", Role.ACCOUNT_MANAGER)
        ref = tenants.create_tenant(session, principal=am, data=_SAMPLE_TENANT)[0].id
    calls = _stage_calls(stage)
    for n, call in enumerate(calls, 1):
        with db.write() as session:
            call(session, ref)
        if n < len(calls):
            _finish_open_runs(db, worker, clock, notes)
    with db.write() as session:
        # Runs the last call started: the runbook under test runs instead.
        for run in repository.open_runs(session):
            engine.cancel(session, run_id=run.id, principal=TESTER, reason="runbooks test setup")
        tenant = tenants.get_tenant(session, principal=SYSTEM, ref=ref)
        return TenantRead.model_validate(tenant)


def _setup(
    db: Database,
    actions: Registry,
    clock: _Clock,
    runbook: Runbook,
    stage: str | None,
    notes: list[str],
) -> TenantRead | None:
    """The sample tenant a tenant-bound runbook needs (none for the others)."""
    if not runbook.tenant:
        return None
    worker = Worker(db, actions, name="runbooks-test-setup", concurrency=1, poll_seconds=0.01)
    try:
        tenant = _sample_tenant(db, worker, clock, stage or tenant_stage_for(runbook), notes)
    finally:
        worker.stop(timeout=1)
    notes.append(f"sample tenant {tenant.name} ({tenant.state})")
    return tenant


def _finish_open_runs(db: Database, worker: Worker, clock: _Clock, notes: list[str]) -> None:
    with db.read() as session:
        runs = [(r.id, r.runbook_id) for r in repository.open_runs(session)]
    for run_id, runbook_id in runs:
        trail: dict[str, list[str]] = defaultdict(list)
        problems: list[str] = []
        _drive(db, worker, run_id, clock, Faults(), set(), [], trail, problems, 120.0)
        with db.read() as session:
            run = engine.get_run(session, run_id)
        if run.status != "succeeded":
            raise Unprocessable(
                f"setting up the sample tenant: its {runbook_id} run {run.status}: "
                + "; ".join([run.error or "", *problems]).strip("; ")
            )
        notes.append(f"sample tenant set up through {runbook_id} (run {run_id})")


def _inputs(runbook: Runbook, given: dict[str, Any], tenant: TenantRead | None) -> dict[str, Any]:
    values = dict(given)
    for name, declared in runbook.inputs.items():
        if name in values or not declared.required:
            continue
        if name == "tenant" and declared.type == "object" and tenant is not None:
            values[name] = tenant.model_dump(mode="json")
        else:
            values[name] = SAMPLE_INPUTS[declared.type]
    return values


@contextmanager
def _sandbox(build: ActionsFactory) -> Iterator[tuple[Database, Registry]]:
    with tempfile.TemporaryDirectory(prefix="tenantops-runbook-test-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'tenantops.db'}")
        try:
            upgrade(db.engine)
            with build(Path(tmp), db) as actions:
                yield db, actions
        finally:
            db.dispose()


def plan_runbook(
    loaded: Loaded,
    *,
    build: ActionsFactory,
    inputs: dict[str, Any] | None = None,
    tenant_state: str | None = None,
) -> Plan:
    """The steps of a runbook with their params rendered for a sample tenant; no effects.

    A ``gitops.sync_tenant`` step is previewed with the ``gitops.plan`` action
    when it is installed (the manifests it would commit).
    """
    runbook = loaded.runbook
    clock = _Clock()
    set_clock(clock)
    try:
        with _sandbox(build) as (db, actions):
            tenant = _setup(db, actions, clock, runbook, tenant_state, [])
            return _plan(loaded, actions, tenant, _inputs(runbook, inputs or {}, tenant))
    finally:
        set_clock(None)


def _plan(
    loaded: Loaded, actions: Registry, tenant: TenantRead | None, values: dict[str, Any]
) -> Plan:
    runbook = loaded.runbook
    context = {
        "run": {
            "id": "dry-run",
            "runbook": runbook.id,
            "tenant_id": tenant.id if tenant else None,
            "started_by": TESTER.subject,
        },
        "inputs": values,
        "steps": {},
    }
    steps = []
    for step in runbook.steps:
        what = step.action or (
            f"gate: {', '.join(step.gate.roles)}" if step.gate else f"wait {step.wait}"
        )
        planned = PlannedStep(
            step.name,
            step.title,
            step.kind,
            what,
            step.timeout,
            step.retry.attempts,
            step.params,
        )
        try:
            planned.params = engine.render(step.params, context)
        except Exception as exc:  # a template that needs an earlier step's output
            planned.unresolved = f"rendered when it runs ({exc})"
        if (
            step.action == "gitops.sync_tenant"
            and "gitops.plan" in actions
            and planned.unresolved is None
        ):
            ctx = ActionContext(
                run_id="dry-run",
                step_name=step.name,
                tenant_id=tenant.id if tenant else None,
                params=planned.params,
                idempotency_key=f"dry-run/{step.name}",
                attempt=1,
                actor=TESTER.subject,
                inputs=values,
            )
            try:
                planned.preview = actions["gitops.plan"].run(ctx).output
            except Exception as exc:
                planned.preview_error = f"{type(exc).__name__}: {exc}"
        steps.append(planned)
    return Plan(
        runbook.id,
        runbook.version,
        loaded.hash,
        tenant.model_dump(mode="json") if tenant else None,
        values,
        steps,
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
    clock = _Clock()
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
        with _sandbox(build) as (db, real):
            actions: Registry = {
                name: _Injector(action, faults, executions, failed, timed_out, release)
                for name, action in real.items()
            }
            tenant = _setup(db, real, clock, runbook, tenant_state, notes)
            with db.write() as session:
                run_id = engine.start_run(
                    session,
                    loaded=loaded,
                    actor=TESTER,
                    tenant_id=tenant.id if tenant else None,
                    inputs=_inputs(runbook, inputs or {}, tenant),
                ).id
            worker = Worker(
                db, actions, name="runbooks-test-worker", concurrency=1, poll_seconds=0.01
            )
            try:
                _drive(
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


def _drive(
    db: Database,
    worker: Worker,
    run_id: str,
    clock: _Clock,
    faults: Faults,
    crashed: set[str],
    stale: list[engine.Claim],
    step_notes: dict[str, list[str]],
    notes: list[str],
    max_seconds: float,
) -> None:
    """Advance the run until it finishes: work, crash, approve gates or jump the clock."""
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        with db.read() as session:
            run = engine.get_run(session, run_id)
            rows = engine.steps_of(session, run_id)
        if run.status in engine.FINISHED:
            return
        now = clock()
        due = [r for r in rows if r.status == "ready" and r.wake_at and as_utc(r.wake_at) <= now]
        if due and due[0].name in faults.crash and due[0].name not in crashed:
            _crash(db, worker, due[0].name, crashed, stale, step_notes)
            continue
        if worker.run_once():
            continue
        waiting = [r for r in rows if r.status == "waiting"]
        if waiting:
            _approve(db, run_id, waiting[0].name, step_notes)
            continue
        upcoming = [as_utc(r.wake_at) for r in rows if r.status == "ready" and r.wake_at] + [
            as_utc(r.lease_expires_at) for r in rows if r.status == "running" and r.lease_expires_at
        ]
        if not upcoming:
            notes.append("the run is stuck: nothing is due, waiting or running")
            return
        clock.jump_to(min(upcoming))
    notes.append(f"the run did not finish within {max_seconds:g}s")


def _crash(
    db: Database,
    worker: Worker,
    step: str,
    crashed: set[str],
    stale: list[engine.Claim],
    step_notes: dict[str, list[str]],
) -> None:
    """A worker claims ``step``, runs its action and dies before recording the result."""
    with db.write() as session:
        claims = engine.claim(session, worker="runbooks-test-crashed-worker", limit=1)
    for claim in claims:
        crashed.add(claim.step_name)
        stale.append(claim)
        action = worker.actions.get(claim.action)
        ran = "claimed it and died"
        if action is not None:
            ctx = ActionContext(
                run_id=claim.run_id,
                step_name=claim.step_name,
                tenant_id=claim.tenant_id,
                params=claim.params,
                idempotency_key=claim.idempotency_key,
                attempt=claim.attempt,
                actor=claim.actor,
                inputs=claim.inputs,
            )
            try:
                action.run(ctx)
                ran = "ran it and died before recording the result"
            except Exception as exc:
                ran = f"ran it ({type(exc).__name__}) and died"
        step_notes[claim.step_name].append(f"a worker {ran}; its lease had to expire")
    if step not in crashed:  # pragma: no cover - another step was due first
        crashed.add(step)


def _approve(db: Database, run_id: str, step: str, step_notes: dict[str, list[str]]) -> None:
    """Open a waiting gate as its approver would: a holder of its role, or its system signal."""
    with db.write() as session:
        run = engine.get_run(session, run_id)
        gate = engine.spec_of(run).step(step).gate
        assert gate is not None
        role = gate.roles[0]
        if gate.signal is None and role in Role.__members__.values():
            approver = _as(role, Role(role))
        else:  # opened by the control plane (e.g. the tenant approvals), not by a person
            approver = Principal(f"runbooks-test:{gate.signal or role}", via="system")
        engine.signal(
            session, run_id=run_id, step_name=step, decision="approve", principal=approver
        )
    step_notes[step].append(f"approved by {approver.subject}")
