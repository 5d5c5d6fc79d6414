"""The SLA deadlines of runs and steps, judged over a window as of a cut-off: a read model.

What other domains (the weekly SLA/SLO report) read instead of the run tables:
a few grouped passes, whatever the number of runs, returning value objects
that name tenants by id only. When a deadline counts (runs and steps alike,
``sla_deadline`` set by the engine):

- **met** when the run (step) succeeded by its deadline; it is decided, and
  counted, in the window it finished in;
- **missed** otherwise — it failed, finished late or is still open — decided at
  the deadline, so counted in the window the deadline fell in, once that
  instant is before the cut-off (the window's end, or now for one not over);
- a run or step cancelled (or skipped) before its deadline is not judged.

Everything is judged as of the cut-off: a run (step) not finished by then is
``open``, late by cut-off − deadline, whatever became of it afterwards; a finish
after the cut-off is not seen. So every deadline is judged in exactly one
window, and what is read of a window that is over depends only on the rows up
to its end: it never changes. (A failed run retried later is the exception the
rows cannot tell: the retry clears its ``finished_at``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, not_, null, or_, select
from sqlalchemy.orm import Session

from tenantops.runbooks.models import Run, RunStep

DROPPED = ("cancelled", "skipped")
OPEN = ("pending", "ready", "running", "waiting")
# The status of a missed deadline whose run (step) was not finished at the cut-off.
OPEN_AT_CUTOFF = "open"


def aware(value: datetime | None) -> datetime:
    assert value is not None  # the query selected only rows where it is set
    # SQLite hands back naive datetimes for timezone-aware columns.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """Deadlines decided in ``[start, end)``; misses only up to ``cutoff`` (<= ``end``)."""

    start: datetime
    end: datetime
    cutoff: datetime


@dataclass
class RunbookCounts:
    """One runbook's window: runs started and finished, deadlines met and missed."""

    runbook_id: str
    started: int = 0
    finished: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    runs_met: int = 0
    runs_missed: int = 0
    steps_met: int = 0
    steps_missed: int = 0


@dataclass(frozen=True)
class MissedDeadline:
    """A deadline missed in the window: a run's (``step`` None) or one step's, as of the cut-off."""

    run_id: str
    runbook_id: str
    step: str | None
    tenant_id: str | None
    deadline: datetime
    finished_at: datetime | None
    status: str
    late_seconds: float | None  # None: it failed before its deadline


@dataclass(frozen=True)
class RunOutcome:
    """How many run deadlines of one tenant's runbook were met and missed in the window."""

    tenant_id: str | None
    runbook_id: str
    met: int
    missed: int


@dataclass(frozen=True)
class OverdueGate:
    """An approval gate open at the cut-off whose SLA deadline was already past."""

    run_id: str
    runbook_id: str
    step: str
    tenant_id: str | None
    waiting_since: datetime | None
    deadline: datetime
    overdue_seconds: float


def _met(status: Any, finished: Any, deadline: Any, w: Window) -> ColumnElement[bool]:
    return and_(
        status == "succeeded",
        finished <= deadline,
        finished >= w.start,
        finished < w.end,
        finished <= w.cutoff,
    )


def _missed(status: Any, finished: Any, deadline: Any, w: Window) -> ColumnElement[bool]:
    dropped_in_time = and_(status.in_(DROPPED), finished.is_not(None), finished <= deadline)
    return and_(
        or_(status != "succeeded", finished > deadline),
        not_(dropped_in_time),
        deadline >= w.start,
        deadline < w.cutoff,
    )


def _run_sla() -> tuple[Any, Any, Any]:
    return Run.status, Run.finished_at, Run.sla_deadline


def _step_sla() -> tuple[Any, Any, Any]:
    return RunStep.status, RunStep.finished_at, RunStep.sla_deadline


def runbook_counts(session: Session, w: Window) -> dict[str, RunbookCounts]:
    """Per runbook, by id: runs started and finished in ``w``, and the deadlines decided in it."""
    counts: dict[str, RunbookCounts] = {}

    def row(runbook_id: str) -> RunbookCounts:
        return counts.setdefault(runbook_id, RunbookCounts(runbook_id=runbook_id))

    started = (
        select(Run.runbook_id, func.count())
        .where(Run.created_at >= w.start, Run.created_at < w.end, Run.created_at <= w.cutoff)
        .group_by(Run.runbook_id)
    )
    for runbook_id, n in session.execute(started):
        row(str(runbook_id)).started = int(n)
    finished = (
        select(Run.runbook_id, Run.status, func.count())
        .where(Run.finished_at >= w.start, Run.finished_at < w.end, Run.finished_at <= w.cutoff)
        .group_by(Run.runbook_id, Run.status)
    )
    for runbook_id, status, n in session.execute(finished):
        r = row(str(runbook_id))
        r.finished += int(n)
        if status in ("succeeded", "failed", "cancelled"):
            setattr(r, str(status), getattr(r, str(status)) + int(n))

    for columns, kind, join in ((_run_sla(), "runs", False), (_step_sla(), "steps", True)):
        met, missed = _met(*columns, w), _missed(*columns, w)
        deadline = columns[2]
        query = select(Run.runbook_id, func.count(case((met, 1))), func.count(case((missed, 1))))
        if join:
            query = query.select_from(RunStep).join(Run, Run.id == RunStep.run_id)
        query = query.where(deadline >= w.start, or_(met, missed)).group_by(Run.runbook_id)
        for runbook_id, n_met, n_missed in session.execute(query):
            r = row(str(runbook_id))
            setattr(r, f"{kind}_met", int(n_met))
            setattr(r, f"{kind}_missed", int(n_missed))
    return dict(sorted(counts.items()))


def missed_deadlines(session: Session, w: Window) -> list[MissedDeadline]:
    """Every deadline missed in ``w``, runs and steps, as of its cut-off."""
    found: list[MissedDeadline] = []
    for columns, is_step in ((_run_sla(), False), (_step_sla(), True)):
        status, finished, deadline = columns
        query = select(
            Run.id,
            Run.runbook_id,
            (RunStep.name if is_step else null()).label("step"),
            Run.tenant_id,
            deadline,
            finished,
            status,
        )
        if is_step:
            query = query.select_from(RunStep).join(Run, Run.id == RunStep.run_id)
        query = query.where(_missed(status, finished, deadline, w))
        for run_id, runbook_id, step, tid, due, done, state in session.execute(query):
            due = aware(due)
            # As of the cut-off: a finish after it is not seen, so what is read of a
            # window that is over does not change when the run finishes later.
            ended = None if done is None or aware(done) > w.cutoff else aware(done)
            # A run that failed before its deadline was not late: it missed by failing.
            late = None if ended is not None and ended < due else (ended or w.cutoff) - due
            found.append(
                MissedDeadline(
                    run_id=run_id,
                    runbook_id=runbook_id,
                    step=step,
                    tenant_id=tid,
                    deadline=due,
                    finished_at=ended,
                    status=OPEN_AT_CUTOFF if ended is None else state,
                    late_seconds=None if late is None else late.total_seconds(),
                )
            )
    found.sort(key=lambda m: (m.deadline, m.runbook_id, m.run_id, m.step or ""))
    return found


def run_outcomes(session: Session, w: Window) -> Iterator[RunOutcome]:
    """Per tenant and runbook: the run deadlines met and missed in ``w``."""
    met, missed = _met(*_run_sla(), w), _missed(*_run_sla(), w)
    query = (
        select(
            Run.tenant_id,
            Run.runbook_id,
            func.count(case((met, 1))),
            func.count(case((missed, 1))),
        )
        .where(Run.sla_deadline >= w.start, or_(met, missed))
        .group_by(Run.tenant_id, Run.runbook_id)
    )
    for tid, runbook_id, n_met, n_missed in session.execute(query):
        yield RunOutcome(tid, str(runbook_id), int(n_met), int(n_missed))


def overdue_gates(session: Session, cutoff: datetime) -> list[OverdueGate]:
    """Approval gates open at ``cutoff`` whose SLA deadline was already past, oldest first."""
    step = RunStep
    still_open = or_(
        and_(step.finished_at.is_(None), step.status.in_(OPEN)), step.finished_at > cutoff
    )
    query = (
        select(
            Run.id,
            Run.runbook_id,
            step.name,
            Run.tenant_id,
            step.started_at,
            step.sla_deadline,
        )
        .select_from(step)
        .join(Run, Run.id == step.run_id)
        .where(
            step.kind == "gate",
            step.sla_deadline < cutoff,
            or_(step.started_at.is_(None), step.started_at <= cutoff),
            still_open,
        )
        .order_by(step.sla_deadline, Run.id)
    )
    return [
        OverdueGate(
            run_id=run_id,
            runbook_id=runbook_id,
            step=name,
            tenant_id=tid,
            waiting_since=None if since is None else aware(since),
            deadline=aware(due),
            overdue_seconds=(cutoff - aware(due)).total_seconds(),
        )
        for run_id, runbook_id, name, tid, since, due in session.execute(query)
    ]
