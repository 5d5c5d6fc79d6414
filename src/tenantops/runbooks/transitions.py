"""How a run moves: a step activated, a run advanced past a step, failed, announced.

The state changes that every path of the engine shares — the claim path
(``claims``), the gate decisions (``gates``) and recording results
(``engine``) — each applied in the caller's transaction to rows the caller
has locked (the run first, then its steps). The pinned runbook of a run is
read through ``spec_of``, parsed once per content hash.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jinja2.exceptions import TemplateError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.errors import NotFound
from tenantops.kit.clock import as_utc
from tenantops.runbooks import announcements
from tenantops.runbooks.models import Run, RunSignal, RunStep, StepAttempt
from tenantops.runbooks.spec import Runbook, seconds
from tenantops.runbooks.templating import context_of, render

FINISHED = frozenset({"succeeded", "failed", "cancelled"})
# Who the trail names for what the engine does by itself.
ENGINE_ACTOR = Principal(subject="system:engine", via="system")

_SPECS: dict[str, Runbook] = {}
_SPECS_KEPT = 256


def spec_of(run: Run) -> Runbook:
    """The pinned runbook a run executes (never the file as it is now).

    Parsed once per content hash: the hash pins the document, so every run of
    one runbook version shares one parsed copy (treat it as read-only).
    """
    spec = _SPECS.get(run.runbook_hash)
    if spec is None:
        spec = _keep_spec(run.runbook_hash, run.document)
    return spec


def cached_spec(session: Session, run_id: str, runbook_hash: str) -> Runbook:
    """``spec_of`` for a run known by id and hash: its document is read only on a cache miss."""
    spec = _SPECS.get(runbook_hash)
    if spec is None:
        document = session.execute(select(Run.document).where(Run.id == run_id)).scalar_one()
        spec = _keep_spec(runbook_hash, document)
    return spec


def _keep_spec(runbook_hash: str, document: dict[str, Any]) -> Runbook:
    spec = Runbook.model_validate(document)
    if len(_SPECS) >= _SPECS_KEPT:
        _SPECS.pop(next(iter(_SPECS)))
    _SPECS[runbook_hash] = spec
    return spec


def _deadline_for(sla_after: str, trigger: str, within: str, now: datetime) -> datetime | None:
    return now + timedelta(seconds=seconds(within)) if sla_after == trigger else None


def activate(session: Session, run: Run, runbook: Runbook, row: RunStep, now: datetime) -> None:
    """Make ``row`` the run's current step: ready, waiting on its gate, or sleeping on its timer.

    A signal that arrived before the gate opened decides it at once.
    """
    step = runbook.step(row.name)
    row.status, row.wake_at = "ready", now
    if step.action is None:  # a gate or timer starts when it opens; an action when claimed
        row.started_at = now
    if step.sla is not None and step.sla.after == "start":
        # An SLA keyed on an earlier step was set when that step finished.
        row.sla_deadline = _deadline_for(step.sla.after, "start", step.sla.within, now)
    if step.wait is not None:
        try:
            delay = seconds(str(render(step.wait, context_of(session, run))))
        except (TemplateError, ValueError) as exc:
            row.status, row.error, row.finished_at = "failed", f"wait: {exc}", now
            fail_run(session, run, row, now)
            return
        row.wake_at = now + timedelta(seconds=delay)
    if step.gate is not None:
        row.status, row.wake_at = "waiting", None
        run.status = "waiting"
        pending = (
            session.execute(
                select(RunSignal)
                .where(
                    RunSignal.run_id == run.id,
                    RunSignal.step_name == row.name,
                    RunSignal.consumed_at.is_(None),
                )
                .order_by(RunSignal.created_at)
            )
            .scalars()
            .first()
        )
        if pending is not None:
            decide_gate(session, run, runbook, row, pending, now)
    run.updated_at = now


def advance(session: Session, run: Run, runbook: Runbook, done: RunStep, now: datetime) -> None:
    """After ``done`` succeeded: start SLA clocks keyed on it and activate the next step."""
    if runbook.sla is not None and run.sla_deadline is None:
        run.sla_deadline = _deadline_for(runbook.sla.after, done.name, runbook.sla.within, now)
    clocked = [s for s in runbook.steps if s.sla is not None and s.sla.after == done.name]
    if clocked:  # steps whose SLA clock starts when ``done`` finished
        keyed = session.execute(
            select(RunStep).where(
                RunStep.run_id == run.id,
                RunStep.name.in_([s.name for s in clocked]),
                RunStep.sla_deadline.is_(None),
                RunStep.status.not_in(FINISHED),
            )
        ).scalars()
        for row in keyed:
            sla = runbook.step(row.name).sla
            assert sla is not None
            row.sla_deadline = now + timedelta(seconds=seconds(sla.within))
    following = (
        session.execute(
            select(RunStep)
            .where(
                RunStep.run_id == run.id,
                RunStep.position > done.position,
                RunStep.status == "pending",
            )
            .order_by(RunStep.position)
            .limit(1)
        )
        .scalars()
        .first()
    )
    run.status = "running"
    if following is not None:
        activate(session, run, runbook, following, now)
    else:
        run.status, run.finished_at = "succeeded", now
        audit.record(
            session,
            actor=ENGINE_ACTOR,
            action="run.succeeded",
            tenant_id=run.tenant_id,
            changes={},
            detail={"run_id": run.id},
        )
        announce_run(session, run, "succeeded")
    run.updated_at = now


def close_attempt(
    session: Session, row: RunStep, status: str, now: datetime, error: str | None = None
) -> None:
    """End the step's current attempt row (``running``) with ``status``."""
    session.execute(
        update(StepAttempt)
        .where(
            StepAttempt.step_id == row.id,
            StepAttempt.attempt == row.attempt,
            StepAttempt.status == "running",
        )
        .values(status=status, finished_at=now, error=error)
    )


def fail_run(session: Session, run: Run, row: RunStep, now: datetime) -> None:
    """Fail ``run`` because ``row`` failed for good: audited and announced."""
    run.status, run.finished_at, run.updated_at = "failed", now, now
    run.error = f"step {row.name} failed: {row.error}"
    audit.record(
        session,
        actor=ENGINE_ACTOR,
        action="run.failed",
        tenant_id=run.tenant_id,
        changes={},
        detail={"run_id": run.id, "step": row.name, "error": row.error, "attempts": row.attempt},
    )
    announce_step(session, run, row, error=row.error or "failed")
    announce_run(session, run, "failed")


def announce_step(session: Session, run: Run, row: RunStep, error: str | None = None) -> None:
    """Put the step's end (its evidence, or ``error``) in the event outbox."""
    announcements.emit(
        session,
        announcements.step_finished(
            run_id=run.id,
            runbook=run.runbook_id,
            tenant_id=run.tenant_id,
            inputs=run.inputs,
            step=row.name,
            attempt=row.attempt,
            evidence=row.evidence,
            error=error,
        ),
    )


def announce_run(session: Session, run: Run, status: str, actor: str | None = None) -> None:
    """Put the run's end (``status``, by ``actor`` or the engine) in the event outbox."""
    announcements.emit(
        session,
        announcements.run_finished(
            run_id=run.id,
            runbook=run.runbook_id,
            version=run.runbook_version,
            tenant_id=run.tenant_id,
            inputs=run.inputs,
            status=status,
            actor=actor or announcements.ENGINE,
            error=run.error,
        ),
    )


def get_run(session: Session, run_id: str, *, for_update: bool = False) -> Run:
    """The run ``run_id`` (locked with ``for_update``); ``NotFound`` if there is none.

    Locked, it is read afresh: a copy this session read before the lock may be stale,
    and a check of its status must see the row as the lock holds it.
    """
    run = session.get(Run, run_id, with_for_update=for_update, populate_existing=for_update)
    if run is None:
        raise NotFound(f"no run {run_id!r}")
    return run


def steps_of(session: Session, run_id: str) -> list[RunStep]:
    """The run's step rows in runbook order."""
    return list(
        session.execute(
            select(RunStep).where(RunStep.run_id == run_id).order_by(RunStep.position)
        ).scalars()
    )


def decide_gate(
    session: Session, run: Run, runbook: Runbook, row: RunStep, sig: RunSignal, now: datetime
) -> None:
    """Apply the signal ``sig`` to the open gate ``row``: approve advances, reject fails."""
    sig.consumed_at = now
    row.decided_by, row.finished_at = sig.principal, now
    row.evidence = {
        "decision": sig.decision,
        "by": sig.principal,
        "role": sig.role,
        "comment": sig.comment,
        "signalled_at": as_utc(sig.created_at).isoformat(),
    }
    if sig.decision == "approve":
        row.status = "succeeded"
        advance(session, run, runbook, row, now)
    else:
        row.status, row.error = "failed", f"rejected by {sig.principal}"
        fail_run(session, run, row, now)
