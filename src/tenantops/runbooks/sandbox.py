"""The throwaway world ``runbooks test`` and ``--dry-run`` try a runbook in.

A temporary SQLite database with the local drivers, a clock the harness jumps
instead of waiting, a sample tenant taken to the right stage through the tenant
service as people would, and the loop that drives a run to its end (working,
crashing a worker, approving gates as their approvers would).
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tenantops.approvals import service as approvals
from tenantops.auth import tokens
from tenantops.auth.principal import SYSTEM, Principal, Role
from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.kit.clock import as_utc
from tenantops.migrations import upgrade
from tenantops.runbooks import engine, repository
from tenantops.runbooks.actions import GateChecks, Registry
from tenantops.runbooks.spec import Runbook, seconds
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

# Installs the actions (drivers) and the gate checks for a throwaway data directory and
# database, and takes down whatever it started for them (e.g. the server behind the
# health probe).
ActionsFactory = Callable[[Path, Database], AbstractContextManager[tuple[Registry, GateChecks]]]
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


class Clock:
    """Wall time plus an offset the harness advances instead of waiting (backoffs, leases)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def jump_to(self, when: datetime) -> None:
        ahead = as_utc(when) - self()
        if ahead > timedelta(0):
            self.offset += ahead + timedelta(milliseconds=1)


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
BREAK_GLASS = "emergency-break-glass"
REACTIVATION = "tenant-reactivation"
# Inputs a service fills from a record it creates before it starts the runbook.
GRANTED_INPUTS = {BREAK_GLASS: frozenset({"token_id", "subject", "expires_at"})}
TENANT_STAGES = ("requested", "approved", "active", "suspended", "reactivated", "offboarding")
STAGE_OF_RUNBOOK = {
    "tenant-onboarding": "approved",
    "tenant-suspension": "suspended",
    REACTIVATION: "reactivated",
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
    db: Database, worker: Worker, clock: Clock, stage: str, notes: list[str]
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


def setup_tenant(
    db: Database,
    actions: Registry,
    clock: Clock,
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


def _finish_open_runs(db: Database, worker: Worker, clock: Clock, notes: list[str]) -> None:
    with db.read() as session:
        runs = [(r.id, r.runbook_id) for r in repository.open_runs(session)]
    for run_id, runbook_id in runs:
        trail: dict[str, list[str]] = defaultdict(list)
        problems: list[str] = []
        drive(db, worker, run_id, clock, Faults(), set(), [], trail, problems, 120.0)
        with db.read() as session:
            run = engine.get_run(session, run_id)
        if run.status != "succeeded":
            raise Unprocessable(
                f"setting up the sample tenant: its {runbook_id} run {run.status}: "
                + "; ".join([run.error or "", *problems]).strip("; ")
            )
        notes.append(f"sample tenant set up through {runbook_id} (run {run_id})")


def inputs_for(
    runbook: Runbook, given: dict[str, Any], tenant: TenantRead | None
) -> dict[str, Any]:
    values = dict(given)
    for name, declared in runbook.inputs.items():
        if name in values or not declared.required:
            continue
        if name == "tenant" and declared.type == "object" and tenant is not None:
            values[name] = tenant.model_dump(mode="json")
        elif declared.example is not None:
            values[name] = declared.example
        else:
            values[name] = SAMPLE_INPUTS[declared.type]
    return values


def granted_inputs(
    db: Database, runbook: Runbook, given: dict[str, Any], tenant: TenantRead | None = None
) -> dict[str, Any]:
    """The inputs a service hands a runbook it starts, for the record it made first.

    Break glass is started by ``POST /api/v1/break-glass`` with the token it has
    just minted; its revoke step needs that token to exist. The test mints one
    the same way (for the example duration) unless ``--input token_id=…`` names one.
    A reactivation is started for the approved request its last step checks:
    the sample tenant's, unless ``--input approval_request_id=…`` names one.
    """
    if runbook.id == REACTIVATION and tenant is not None and "approval_request_id" not in given:
        with db.read() as session:
            approved = [
                r.id
                for r in approvals.list_for_tenant(session, tenant_id=tenant.id)
                if r.kind == approvals.REACTIVATION and r.status == "approved"
            ]
        return {**given, "approval_request_id": approved[-1]} if approved else given
    if runbook.id != BREAK_GLASS or "token_id" in given:
        return given
    declared = runbook.inputs.get("duration")
    duration = str(given.get("duration") or (declared.example if declared else None) or "1h")
    subject = f"breakglass:{TESTER.subject}"
    with db.write() as session:
        issued = tokens.create_token(
            session,
            actor=TESTER,
            subject=subject,
            roles=[Role.OPS_ENGINEER],
            tenant_id=None,
            ttl=timedelta(seconds=seconds(duration)),
        )
    assert issued.expires_at is not None
    return {
        **given,
        "duration": duration,
        "token_id": issued.id,
        "subject": subject,
        "expires_at": issued.expires_at.isoformat(),
    }


@contextmanager
def sandbox(build: ActionsFactory) -> Iterator[tuple[Database, Registry, GateChecks]]:
    """A migrated SQLite database, the actions and gate checks ``build`` installs, in a
    temporary directory."""
    with tempfile.TemporaryDirectory(prefix="tenantops-runbook-test-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'tenantops.db'}")
        try:
            upgrade(db.engine)
            with build(Path(tmp), db) as (actions, checks):
                yield db, actions, checks
        finally:
            db.dispose()


def drive(
    db: Database,
    worker: Worker,
    run_id: str,
    clock: Clock,
    faults: Faults,
    crashed: set[str],
    stale: list[engine.Claim],
    step_notes: dict[str, list[str]],
    notes: list[str],
    max_seconds: float,
    checks: GateChecks | None = None,
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
            _approve(db, run_id, waiting[0].name, step_notes, checks)
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
            try:
                action.run(claim.context())
                ran = "ran it and died before recording the result"
            except Exception as exc:
                ran = f"ran it ({type(exc).__name__}) and died"
        step_notes[claim.step_name].append(f"a worker {ran}; its lease had to expire")
    if step not in crashed:  # pragma: no cover - another step was due first
        crashed.add(step)


def _approve(
    db: Database,
    run_id: str,
    step: str,
    step_notes: dict[str, list[str]],
    checks: GateChecks | None,
) -> None:
    """Open a waiting gate as its approver would: a holder of its role, or its system signal.

    A person approves with no comment, through the gate's check when it names one.
    """
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
            session,
            run_id=run_id,
            step_name=step,
            decision="approve",
            principal=approver,
            checks=checks,
        )
    step_notes[step].append(f"approved by {approver.subject}")
