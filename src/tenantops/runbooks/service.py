"""Runs and runbooks as the API and CLI see them: scoped reads, gate decisions, cancel, retry.

The engine owns the rules of a run (segregation of duties on gates, what can be
cancelled or retried); this module adds who may see which run — a tenant owner
sees only the runs of their own tenant, and a run of another tenant is a 404,
exactly like a tenant that does not exist — and shapes rows for the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.errors import NotFound
from tenantops.kit.clock import as_utc, utcnow
from tenantops.runbooks import engine, repository, spec
from tenantops.runbooks.actions import GateChecks
from tenantops.runbooks.models import Run, RunStep, StepAttempt
from tenantops.runbooks.repository import StepState
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
from tenantops.runbooks.templating import prompt_text, run_context
from tenantops.tenants import service as tenants


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


def _visible(session: Session, principal: Principal, run_id: str) -> Run:
    # A tenant owner asking for a run of another tenant (or of no tenant) learns
    # nothing, not even that it exists: the same 404 as a run that does not.
    run = repository.get(session, run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r}")
    if principal.tenant_scoped and (
        run.tenant_id is None or run.tenant_id != tenants.own_tenant_id(session, principal)
    ):
        raise NotFound(f"no run {run_id!r}")
    return run


def _tenant_names(session: Session, tenant_ids: set[str]) -> dict[str, str]:
    return tenants.names_of(session, tenant_ids)


def _summary(
    run: Run, steps: Sequence[RunStep | StepState], tenant_name: str | None, now: datetime
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
        "closed_at": as_utc(run.closed_at) if run.closed_at else None,
        "closed_reason": run.closed_reason,
        "current_step": current if run.status != "succeeded" else None,
        "steps_done": sum(1 for s in steps if s.status == "succeeded"),
        "steps_total": len(steps),
        "sla": sla_status(run.sla_deadline, run.sla_breached_at, run.finished_at, now),
    }


# An attempt in one of these states did not fail: it is not among the step's failures.
_UNFAILED_TRY = frozenset({"running", "succeeded", "cancelled"})


def _tries(row: RunStep, attempts: list[StepAttempt]) -> int:
    """Tries of the step's current round, the count its ``max_attempts`` bounds.

    ``attempt`` numbers the attempt rows and so keeps counting across
    ``runs retry``; ``failures`` restarts there. The round's tries are its
    failures plus its last try when that one did not fail (still running,
    the success, or the try a cancel stopped). A try whose worker's lease
    lapsed is neither, as the engine counts it.
    """
    unfailed = bool(attempts) and attempts[-1].status in _UNFAILED_TRY
    return row.failures + (1 if unfailed else 0)


def _step(
    row: RunStep,
    runbook: Runbook,
    attempts: list[StepAttempt],
    now: datetime,
    context: dict[str, Any],
) -> StepRead:
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
            "gate": GateInfo(
                roles=gate.roles,
                prompt=prompt_text(gate.prompt, context) if gate.prompt else None,
                signal=gate.signal,
            )
            if gate
            else None,
            "window": spec.window,
            "status": row.status,
            "attempt": row.attempt,
            "failures": row.failures,
            "tries": _tries(row, attempts),
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
    context = run_context(run)  # what the gates' prompts are filled in with
    return RunRead.model_validate(
        {
            **_summary(run, rows, names.get(run.tenant_id or ""), now),
            "inputs": run.inputs,
            "steps": [_step(r, runbook, tries[r.id], now, context) for r in rows],
            # What engine.retry accepts: failed, not closed, not ended by a rejected gate.
            "retriable": run.status == "failed"
            and run.closed_at is None
            and not any(r.kind == "gate" and r.status == "failed" for r in rows),
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
        tenant_id = tenants.own_tenant_id(session, principal)
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
    checks: GateChecks | None = None,
) -> RunRead:
    """Approve or reject a gate; the engine enforces its roles and segregation of duties.

    ``checks`` are the installed gate checks (``app.state.gate_checks``): an
    approval of a gate naming one must pass it, and is refused when it is not
    among them.
    """
    _visible(session, principal, run_id)
    engine.signal(
        session,
        run_id=run_id,
        step_name=step,
        decision=data.decision,
        principal=principal,
        comment=data.comment,
        checks=checks,
    )
    session.flush()
    return read_run(session, principal=principal, run_id=run_id)


def cancel_run(session: Session, *, principal: Principal, run_id: str, reason: str) -> RunRead:
    """Cancel an unfinished run (a worker still running one of its steps is fenced
    off), or close a failed one: it stays failed and is never retried."""
    _visible(session, principal, run_id)
    if engine.get_run(session, run_id, for_update=True).status == "failed":
        engine.close(session, run_id=run_id, principal=principal, reason=reason)
    else:
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


def resolve_runbook(ref: str) -> Loaded:
    """A runbook by library id, or from a YAML file path."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise NotFound(f"no runbook file {ref!r}")
        return spec.parse(path.read_text(encoding="utf-8"), source=str(path))
    return spec.get(spec.load_library(), ref)


@dataclass(frozen=True)
class FailedRun:
    """A run that gave up: which runbook, whose, and why."""

    id: str
    runbook_id: str
    tenant_id: str | None
    error: str
    finished_at: datetime


def failed_since(session: Session, *, since: datetime, limit: int = 200) -> list[FailedRun]:
    """Runs that failed at or after ``since``, newest first: each needs a person (retry
    from the failed step), and a failed chain run starts no next period. A
    run ended by a rejected gate is not among them (a person decided it), nor a
    closed one (a person, or a change of its tenant, decided it stays failed)."""
    return [
        FailedRun(
            id=r.id,
            runbook_id=r.runbook_id,
            tenant_id=r.tenant_id,
            error=r.error or "no error recorded",
            finished_at=as_utc(r.finished_at or since),
        )
        for r in repository.failed_since(session, since, limit)
    ]


def status_of(session: Session, run_id: str) -> tuple[str, datetime | None] | None:
    """A run's status and when it finished (None: no such run); a failed run that was
    closed reads ``closed``: nobody is to act on it any more."""
    run = repository.get(session, run_id)
    if run is None:
        return None
    status = "closed" if run.closed_at is not None else run.status
    return status, None if run.finished_at is None else as_utc(run.finished_at)
