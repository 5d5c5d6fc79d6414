"""Read queries over runs, steps and attempts for the API (the engine writes them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Exists, func, select
from sqlalchemy.orm import Session

# The services read a page's cursor through the repository that pages.
from tenantops.kit.cursor import decode_cursor as decode_cursor
from tenantops.kit.cursor import page
from tenantops.runbooks.models import Run, RunStep, StepAttempt


@dataclass(frozen=True)
class RunFilter:
    """Filters of ``GET /runs``; ``tenant_id`` is already resolved from an id or a name."""

    tenant_id: str | None = None
    runbook_id: str | None = None
    status: str | None = None


def list_page(
    session: Session, filters: RunFilter, *, after_id: str | None, limit: int
) -> tuple[Sequence[Run], str | None]:
    """Newest first, keyset-paged on the time-ordered id; returns (rows, next cursor)."""
    query = select(Run).order_by(Run.id.desc()).limit(limit + 1)
    if filters.tenant_id is not None:
        query = query.where(Run.tenant_id == filters.tenant_id)
    if filters.runbook_id:
        query = query.where(Run.runbook_id == filters.runbook_id)
    if filters.status:
        query = query.where(Run.status == filters.status)
    if after_id is not None:
        query = query.where(Run.id < after_id)
    return page(session.execute(query).scalars().all(), limit)


def get(session: Session, run_id: str) -> Run | None:
    return session.get(Run, run_id)


def steps(session: Session, run_id: str) -> Sequence[RunStep]:
    return (
        session.execute(select(RunStep).where(RunStep.run_id == run_id).order_by(RunStep.position))
        .scalars()
        .all()
    )


@dataclass(frozen=True)
class StepState:
    """A step's name and status: what a run summary needs of it."""

    name: str
    status: str


def step_progress(session: Session, run_ids: Sequence[str]) -> dict[str, list[StepState]]:
    """The steps' names and states of several runs at once (one query), by run id, in order.

    Only two narrow columns: a page of run summaries must not read every step's
    inputs, outputs and evidence.
    """
    by_run: dict[str, list[StepState]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return by_run
    rows = session.execute(
        select(RunStep.run_id, RunStep.name, RunStep.status)
        .where(RunStep.run_id.in_(run_ids))
        .order_by(RunStep.run_id, RunStep.position)
    )
    for run_id, name, status in rows:
        by_run[run_id].append(StepState(name, status))
    return by_run


def attempts(session: Session, step_ids: Sequence[str]) -> dict[str, list[StepAttempt]]:
    """Attempts of the given steps, by step id, oldest first."""
    by_step: dict[str, list[StepAttempt]] = {step_id: [] for step_id in step_ids}
    if not step_ids:
        return by_step
    rows = session.execute(
        select(StepAttempt)
        .where(StepAttempt.step_id.in_(step_ids))
        .order_by(StepAttempt.step_id, StepAttempt.attempt)
    ).scalars()
    for row in rows:
        by_step[row.step_id].append(row)
    return by_step


def count_attempts(session: Session, step_id: str, status: str) -> int:
    query = select(func.count()).where(StepAttempt.step_id == step_id, StepAttempt.status == status)
    return int(session.execute(query).scalar_one())


def open_runs(session: Session) -> Sequence[Run]:
    """Every unfinished run, oldest first."""
    query = select(Run).where(Run.status.in_(("running", "waiting"))).order_by(Run.id)
    return session.execute(query).scalars().all()


def rejected_at_gate() -> Exists:
    """True for a run a person ended by rejecting a gate (its gate step failed): a
    decision, not a failure to page about or to close."""
    return (
        select(RunStep.id)
        .where(RunStep.run_id == Run.id, RunStep.kind == "gate", RunStep.status == "failed")
        .exists()
    )


def failed_since(session: Session, since: datetime, limit: int) -> Sequence[Run]:
    """Runs that failed at or after ``since``, newest first (the status index finds them),
    except those a person ended by rejecting a gate (a decision, not a failure) and
    those closed (nobody is to retry them)."""
    query = (
        select(Run)
        .where(
            Run.status == "failed",
            Run.closed_at.is_(None),
            Run.finished_at >= since,
            ~rejected_at_gate(),
        )
        .order_by(Run.finished_at.desc(), Run.id)
        .limit(limit)
    )
    return session.execute(query).scalars().all()
