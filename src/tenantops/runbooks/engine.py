"""The durable runbook engine: runs and steps as rows, advanced in transactions.

Invariants:

- A step is completed by at most one worker: results are recorded with
  ``UPDATE … WHERE lease_token = :token AND status = 'running'``; a worker
  whose lease expired (and was reclaimed) or whose run was cancelled matches no
  row and its result is dropped (fencing).
- Claiming uses ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers never
  wait on each other; on SQLite the write transaction (``BEGIN IMMEDIATE``)
  serialises claims.
- The run's next step is activated in the same transaction that completes the
  previous one; a crash between steps loses nothing.
- A gate's signal is a row: one that arrives before the gate opens is kept
  and consumed when the gate activates.

The engine's surface is this module; its parts live beside it: ``claims``
(leases, fencing, attempts), ``gates`` (who may decide, signals),
``transitions`` (activate, advance, fail — shared by every path) and
``templating`` (params and waits rendered with the run's context).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.errors import Conflict, Unprocessable
from tenantops.kit.bulk import insert_many
from tenantops.kit.clock import as_utc, utcnow
from tenantops.kit.ids import new_id
from tenantops.runbooks import announcements, repository
from tenantops.runbooks.actions import StepResult
from tenantops.runbooks.claims import LEASE_GRACE, Claim, Taken, claim, renew, take
from tenantops.runbooks.gates import gate_refusal, signal
from tenantops.runbooks.models import Run, RunStep
from tenantops.runbooks.spec import Loaded, Runbook, Step, seconds
from tenantops.runbooks.templating import render, templated
from tenantops.runbooks.transitions import (
    ENGINE_ACTOR,
    FINISHED,
    activate,
    advance,
    announce_run,
    announce_step,
    cached_spec,
    close_attempt,
    fail_run,
    get_run,
    spec_of,
    steps_of,
)

__all__ = [
    "FINISHED",
    "LEASE_GRACE",
    "Breach",
    "Claim",
    "NewRun",
    "Taken",
    "cached_spec",
    "cancel",
    "check_deadlines",
    "claim",
    "close",
    "complete",
    "end_wait",
    "fail",
    "failed_runs",
    "gate_refusal",
    "get_run",
    "open_runs",
    "render",
    "renew",
    "retry",
    "runs_of",
    "runs_with_input",
    "signal",
    "spec_of",
    "start_run",
    "start_runs",
    "steps_of",
    "take",
    "templated",
]
_STEPS = cast(Table, RunStep.__table__)


def _check_inputs(runbook: Runbook, inputs: dict[str, Any]) -> None:
    types: dict[str, type | tuple[type, ...]] = {
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
        "object": dict,
    }
    for name, declared in runbook.inputs.items():
        if name not in inputs:
            if declared.required:
                raise Unprocessable(f"runbook {runbook.id} needs input {name!r}")
            continue
        if not isinstance(inputs[name], types[declared.type]):
            raise Unprocessable(f"input {name!r} of runbook {runbook.id} must be {declared.type}")
    unknown = sorted(set(inputs) - set(runbook.inputs))
    if unknown:
        raise Unprocessable(f"runbook {runbook.id} has no input {', '.join(unknown)}")


@dataclass(frozen=True)
class NewRun:
    """One run for ``start_runs``: the tenant it runs against and its inputs."""

    tenant_id: str | None = None
    inputs: dict[str, Any] | None = None


def start_run(
    session: Session,
    *,
    loaded: Loaded,
    actor: Principal,
    tenant_id: str | None = None,
    inputs: dict[str, Any] | None = None,
    audited: bool = True,
) -> Run:
    """Create a run pinned to ``loaded``'s version and hash, and activate its first step.

    ``audited=False`` when the caller's own audit entry of the same transaction
    already names the run (a tenant request that starts its onboarding).
    """
    new = NewRun(tenant_id=tenant_id, inputs=inputs)
    return start_runs(session, loaded=loaded, actor=actor, runs=[new], audited=audited)[0]


def start_runs(
    session: Session,
    *,
    loaded: Loaded,
    actor: Principal,
    runs: Sequence[NewRun],
    audited: bool = True,
) -> list[Run]:
    """Start ``runs`` of one runbook in the caller's transaction, as that many ``start_run`` would.

    Every input is checked before anything is written, and all of them start
    or none does (the caller's transaction). A runbook whose first step is an
    action costs the same statements whatever the number of runs: the runs,
    their steps (the first ones ready) and their ``run.started`` audit entries
    each go in with one ``INSERT``.
    """
    runbook = loaded.runbook
    checked: list[tuple[str | None, dict[str, Any]]] = []
    for new in runs:
        values = dict(new.inputs or {})
        _check_inputs(runbook, values)
        if runbook.tenant and new.tenant_id is None:
            raise Unprocessable(f"runbook {runbook.id} runs against a tenant; name one")
        checked.append((new.tenant_id, values))
    now = utcnow()
    document = runbook.model_dump(mode="json", exclude_none=True)  # the same for every run
    sla_deadline = None
    if runbook.sla is not None and runbook.sla.after == "start":
        sla_deadline = now + timedelta(seconds=seconds(runbook.sla.within))
    started = [
        Run(
            id=new_id(),
            runbook_id=runbook.id,
            runbook_version=runbook.version,
            runbook_hash=loaded.hash,
            document=document,
            tenant_id=tenant_id,
            status="running",
            inputs=values,
            started_by=actor.subject,
            created_at=now,
            updated_at=now,
            sla_deadline=sla_deadline,
        )
        for tenant_id, values in checked
    ]
    if not started:
        return started
    session.add_all(started)
    entries = [
        audit.NewEntry(
            actor=actor,
            action="run.started",
            tenant_id=run.tenant_id,
            changes={},
            detail={
                "run_id": run.id,
                "runbook": runbook.id,
                "version": runbook.version,
                "hash": loaded.hash,
            },
        )
        for run in started
    ]
    first = runbook.steps[0]
    if first.action is not None:
        # Nothing to read or decide: the steps go in with one INSERT, each
        # run's first already ready (what transitions.activate does to an action step).
        session.flush()  # the run rows before their steps (foreign key)
        first_sla = None
        if first.sla is not None and first.sla.after == "start":
            first_sla = now + timedelta(seconds=seconds(first.sla.within))
        rows: list[dict[str, Any]] = []
        for run in started:
            of_run = [_step_row(run.id, p, step) for p, step in enumerate(runbook.steps)]
            of_run[0]["status"], of_run[0]["wake_at"] = "ready", now
            of_run[0]["sla_deadline"] = first_sla
            rows += of_run
        insert_many(session, _STEPS, rows)
        if audited:
            audit.record_many(session, entries)
        return started
    pending = [
        [RunStep(**_step_row(run.id, p, step)) for p, step in enumerate(runbook.steps)]
        for run in started
    ]
    session.add_all([step for steps in pending for step in steps])
    session.flush()
    if audited:
        audit.record_many(session, entries)
    for run, steps in zip(started, pending, strict=True):
        activate(session, run, runbook, steps[0], now)  # a gate or timer opens after run.started
    return started


def _step_row(run_id: str, position: int, step: Step) -> dict[str, Any]:
    """The columns of a new, pending step row."""
    return {
        "id": new_id(),
        "run_id": run_id,
        "position": position,
        "name": step.name,
        "kind": step.kind,
        "status": "pending",
        "attempt": 0,
        "failures": 0,
        "max_attempts": step.retry.attempts,
        "wake_at": None,
        "idempotency_key": f"{run_id}/{step.name}",
        "sla_deadline": None,
        "maintenance_window": step.window,
    }


def _fenced(session: Session, step_id: str, token: str) -> RunStep | None:
    """The step if ``token`` still holds its lease, locked; ``None`` if it was lost."""
    return (
        session.execute(
            select(RunStep)
            .where(RunStep.id == step_id, RunStep.lease_token == token, RunStep.status == "running")
            .with_for_update()
        )
        .scalars()
        .first()
    )


def complete(
    session: Session,
    *,
    claim: Claim,
    result: StepResult,
    apply: Callable[[Session], None] | None = None,
) -> RunStep | None:
    """Record success; ``None`` if the lease was lost (the result is then dropped).

    ``apply`` runs in the same transaction, after the fencing check, so what a
    step means to the control plane is recorded exactly once.
    """
    # The run first, then the step: the order signal() and cancel() lock in.
    run = session.get(Run, claim.run_id, with_for_update=True)
    row = _fenced(session, claim.step_id, claim.token)
    if run is None or row is None:
        return None
    if apply is not None:
        apply(session)
    now = utcnow()
    row.status, row.output, row.evidence = "succeeded", result.output, result.evidence
    row.finished_at, row.error = now, None
    row.lease_token = row.lease_owner = None
    row.lease_expires_at = None
    close_attempt(session, row, "succeeded", now)
    audit.record(
        session,
        actor=ENGINE_ACTOR,
        action="run.step.succeeded",
        tenant_id=run.tenant_id,
        changes={},
        detail={
            "run_id": run.id,
            "step": row.name,
            "attempt": row.attempt,
            "evidence": result.evidence,
        },
    )
    announce_step(session, run, row)
    advance(session, run, spec_of(run), row, now)
    return row


# What DriverError.__str__ ends a retriable error with: true of one try, misleading
# once the engine has stopped trying.
_RETRIABLE_SUFFIX = " (retriable)"


def _gave_up(error: str, tries: int) -> str:
    """The last error of a step whose retries are spent, saying that nothing retries it now.

    The try's own error (kept on its attempt row) may end in "(retriable)";
    left on the step and its run it would read as if the engine were still
    retrying, when only ``tenantops runs retry`` (or the page's button) can.
    """
    counted = "1 try" if tries == 1 else f"{tries} tries"
    return f"{error.removesuffix(_RETRIABLE_SUFFIX)} — gave up after {counted}"


def fail(session: Session, *, claim: Claim, error: str, retriable: bool = True) -> RunStep | None:
    """Record a failed try: retry after backoff, or fail the run. ``None`` if fenced.

    The attempt keeps ``error`` as the try raised it; a step that fails for
    good because its retries are spent records why no retry follows.
    """
    run = session.get(Run, claim.run_id, with_for_update=True)
    row = _fenced(session, claim.step_id, claim.token)
    if run is None or row is None:
        return None
    now = utcnow()
    step = spec_of(run).step(row.name)
    row.failures += 1
    row.error = error
    row.lease_token = row.lease_owner = None
    row.lease_expires_at = None
    close_attempt(session, row, "failed", now, error)
    if retriable and row.failures < row.max_attempts:
        row.status, row.wake_at = "ready", now + step.retry.delay(row.failures)
        run.updated_at = now
        return row
    if retriable:
        row.error = _gave_up(error, row.failures)
    row.status, row.finished_at = "failed", now
    fail_run(session, run, row, now)
    return row


def open_runs(
    session: Session, *, tenant_id: str, runbook_id: str | None = None, lock: bool = True
) -> list[Run]:
    """The tenant's unfinished runs (of one runbook, if given), oldest first; locked
    unless ``lock`` is false (a page that only shows them)."""
    query = (
        select(Run)
        .where(Run.tenant_id == tenant_id, Run.finished_at.is_(None))
        .order_by(Run.created_at)
    )
    if lock:
        query = query.with_for_update()
    if runbook_id is not None:
        query = query.where(Run.runbook_id == runbook_id)
    return list(session.execute(query).scalars())


def failed_runs(
    session: Session, *, tenant_id: str, runbook_ids: Collection[str] | None = None
) -> list[Run]:
    """The tenant's failed runs that may still be retried (of these runbooks, if given),
    oldest first, locked. Not those ended by a rejected gate: a person decided them."""
    query = (
        select(Run)
        .where(
            Run.tenant_id == tenant_id,
            Run.status == "failed",
            Run.closed_at.is_(None),
            ~repository.rejected_at_gate(),
        )
        .order_by(Run.created_at)
        .with_for_update()
    )
    if runbook_ids is not None:
        query = query.where(Run.runbook_id.in_(runbook_ids))
    return list(session.execute(query).scalars())


def runs_of(session: Session, *, tenant_id: str | None) -> list[Run]:
    """Every run of a tenant (``None``: the runs bound to no tenant), oldest first."""
    query = select(Run).where(Run.tenant_id == tenant_id).order_by(Run.created_at, Run.id)
    return list(session.execute(query).scalars())


def runs_with_input(session: Session, *, runbook_id: str, name: str, value: str) -> list[Run]:
    """The runs of ``runbook_id`` whose input ``name`` is the string ``value``, oldest first.

    For a runbook started once per tenant and period (say): the runs of one
    period, of every tenant, in one query.
    """
    query = (
        select(Run)
        .where(Run.runbook_id == runbook_id, Run.inputs[name].as_string() == value)
        .order_by(Run.created_at, Run.id)
    )
    return list(session.execute(query).scalars())


def end_wait(session: Session, *, run_id: str, step_name: str, now: datetime) -> bool:
    """End the timer of step ``step_name`` now, if it is the step the run is waiting on.

    For a wait whose reason went away early (a break-glass grant revoked before
    its expiry): the next claim finds the timer over and the run goes on. ``False``
    when the step is no timer or is not the one waiting (done, or not reached).
    """
    run = get_run(session, run_id, for_update=True)
    step = next((s for s in spec_of(run).steps if s.name == step_name), None)
    if step is None or step.wait is None:
        return False
    row = session.execute(
        select(RunStep).where(RunStep.run_id == run_id, RunStep.name == step_name)
    ).scalar_one()
    if row.status != "ready" or row.wake_at is None or as_utc(row.wake_at) <= now:
        return False
    row.wake_at = now
    run.updated_at = now
    return True


def cancel(
    session: Session, *, run_id: str, principal: Principal, reason: str, audited: bool = True
) -> Run:
    """Stop a run: open steps are cancelled; a worker still busy is fenced off."""
    run = get_run(session, run_id, for_update=True)
    if run.status in FINISHED:
        raise Conflict(f"run {run.id} is already {run.status}")
    now = utcnow()
    for row in steps_of(session, run.id):
        if row.status not in FINISHED:
            if row.status == "running":
                close_attempt(session, row, "cancelled", now)
            row.status, row.finished_at = "cancelled", now
            row.lease_token = row.lease_owner = None
    run.status, run.finished_at, run.updated_at, run.error = "cancelled", now, now, reason
    # Announced even when the caller's own audit entry names the run.
    announce_run(session, run, "cancelled", principal.subject)
    if audited:
        _ended_by(session, principal, "run.cancelled", run, reason)
    return run


def _ended_by(session: Session, principal: Principal, action: str, run: Run, reason: str) -> None:
    """Audit a person ending ``run`` (cancelled, or closed after it failed) and why."""
    audit.record(
        session,
        actor=principal,
        action=action,
        tenant_id=run.tenant_id,
        changes={},
        detail={"run_id": run.id, "reason": reason},
    )


def close(
    session: Session, *, run_id: str, principal: Principal, reason: str, audited: bool = True
) -> Run:
    """Close a failed run: it stays failed (its failure and SLA verdict stand) but is
    never retried — nobody will, or a later change of its tenant made it wrong to."""
    run = get_run(session, run_id, for_update=True)
    if run.status != "failed":
        raise Conflict(f"only a failed run can be closed; run {run.id} is {run.status}")
    if run.closed_at is not None:
        raise Conflict(f"run {run.id} is already closed ({run.closed_reason})")
    now = utcnow()
    run.closed_at, run.closed_reason, run.updated_at = now, reason, now
    if audited:
        _ended_by(session, principal, "run.closed", run, reason)
    return run


def retry(session: Session, *, run_id: str, principal: Principal) -> Run:
    """Resume a failed run from its failed step, with a fresh set of attempts."""
    run = get_run(session, run_id, for_update=True)
    if run.status != "failed":
        raise Conflict(f"only a failed run can be retried; run {run.id} is {run.status}")
    if run.closed_at is not None:
        raise Conflict(f"run {run.id} was closed ({run.closed_reason}); it is not retried")
    now = utcnow()
    failed = next((r for r in steps_of(session, run.id) if r.status == "failed"), None)
    if failed is None:
        raise Conflict(f"run {run.id} has no failed step to retry from")
    if failed.kind == "gate":  # a gate fails only when someone rejects it
        raise Conflict(
            f"run {run.id} ended because its gate {failed.name} was rejected ({failed.error}): "
            "a decision is not retried — ask again with a new request or run"
        )
    failed.failures, failed.finished_at, failed.error = 0, None, None
    # The step's clock restarts with the new round: its duration is the round
    # that ends it, not the time the run waited for someone to retry it.
    # ``attempt`` keeps counting (attempt rows are numbered by it).
    failed.started_at = now
    run.status, run.finished_at, run.error = "running", None, None
    activate(session, run, spec_of(run), failed, now)
    audit.record(
        session,
        actor=principal,
        action="run.retried",
        tenant_id=run.tenant_id,
        changes={},
        detail={"run_id": run.id, "from_step": failed.name},
    )
    return run


@dataclass(frozen=True)
class Breach:
    run_id: str
    tenant_id: str | None
    step: str | None
    deadline: datetime


def check_deadlines(session: Session) -> list[Breach]:
    """Record every SLA deadline passed by an unfinished run or step, once."""
    now = utcnow()
    breaches: list[Breach] = []
    runs = (
        session.execute(
            select(Run)
            .where(
                Run.sla_deadline <= now, Run.sla_breached_at.is_(None), Run.finished_at.is_(None)
            )
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    for run in runs:
        run.sla_breached_at = now
        breaches.append(Breach(run.id, run.tenant_id, None, as_utc(run.sla_deadline or now)))
    rows = (
        session.execute(
            select(RunStep)
            .join(Run, Run.id == RunStep.run_id)
            .where(
                RunStep.sla_deadline <= now,
                RunStep.sla_breached_at.is_(None),
                RunStep.finished_at.is_(None),
                Run.finished_at.is_(None),
            )
            .with_for_update(skip_locked=True, of=RunStep)
        )
        .scalars()
        .all()
    )
    for row in rows:
        row.sla_breached_at = now
        owner = session.get(Run, row.run_id)
        breaches.append(
            Breach(
                row.run_id,
                owner.tenant_id if owner else None,
                row.name,
                as_utc(row.sla_deadline or now),
            )
        )
    for b in breaches:
        audit.record(
            session,
            actor=ENGINE_ACTOR,
            action="run.sla_breached",
            tenant_id=b.tenant_id,
            changes={},
            detail={"run_id": b.run_id, "step": b.step, "deadline": b.deadline.isoformat()},
        )
        breached = session.get(Run, b.run_id)
        assert breached is not None
        announcements.emit(
            session,
            announcements.sla_breached(
                run_id=b.run_id,
                runbook=breached.runbook_id,
                tenant_id=b.tenant_id,
                inputs=breached.inputs,
                step=b.step,
                deadline=b.deadline.isoformat(),
            ),
        )
    return breaches
