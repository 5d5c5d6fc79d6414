"""The SQL of the weekly SLA/SLO report: a few grouped passes over runs, steps and tenants.

When a deadline counts (runs and steps alike, ``sla_deadline`` set by the engine):

- **met** when the run (step) succeeded by its deadline; it is decided, and
  counted, in the week it finished;
- **missed** otherwise — it failed, finished late or is still open — decided at
  the deadline, so counted in the week the deadline fell in, once that instant
  is before the report's cut-off (the week's end, or now for a week not over);
- a run or step cancelled (or skipped) before its deadline is not judged.

Everything is judged as of the cut-off: a run (step) not finished by then is
``open`` in the report, late by cut-off − deadline, whatever became of it
afterwards; a finish after the cut-off is not seen. So every deadline is judged
in exactly one week, and the report of a week that is over is a function of the
data up to its end: it never changes. Activation time is the KPI dashboard's: the tenant's
``approved_at`` (second approval) to ``activated_at``; its percentiles are the
KPI package's nearest-rank pick (``kpis.queries.nearest_rank``), and "within
SLA" is the dashboard's 30 minutes (``kpis.queries.SLA``).

The queries read other domains' tables directly, read only, as the KPI queries
do: a report over every run of a week cannot afford a service call per run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, not_, null, or_, select, true
from sqlalchemy.orm import Session

from tenantops.kit.sqltime import epoch_micros, seconds
from tenantops.kpis.queries import SLA, nearest_rank
from tenantops.reports.schemas import (
    Activation,
    Attainment,
    Breach,
    OverdueApproval,
    RunbookWeek,
)
from tenantops.runbooks.models import Run, RunStep
from tenantops.tenants.models import Tenant

DROPPED = ("cancelled", "skipped")
OPEN = ("pending", "ready", "running", "waiting")
# A breach's status when the run (step) was not finished at the cut-off.
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


def runbook_weeks(session: Session, w: Window) -> dict[str, RunbookWeek]:
    """Per runbook: runs started and finished in the week, and the deadlines decided in it."""
    weeks: dict[str, RunbookWeek] = {}

    def row(runbook_id: str) -> RunbookWeek:
        return weeks.setdefault(runbook_id, RunbookWeek(runbook_id=runbook_id))

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

    for columns, attr, join in ((_run_sla(), "runs", False), (_step_sla(), "steps", True)):
        met, missed = _met(*columns, w), _missed(*columns, w)
        deadline = columns[2]
        query = select(Run.runbook_id, func.count(case((met, 1))), func.count(case((missed, 1))))
        if join:
            query = query.select_from(RunStep).join(Run, Run.id == RunStep.run_id)
        query = query.where(deadline >= w.start, or_(met, missed)).group_by(Run.runbook_id)
        for runbook_id, n_met, n_missed in session.execute(query):
            setattr(row(str(runbook_id)), attr, Attainment(met=int(n_met), missed=int(n_missed)))
    return dict(sorted(weeks.items()))


def breaches(session: Session, w: Window) -> list[Breach]:
    """Every deadline missed in the week, runs and steps, with the run and the tenant."""
    found: list[Breach] = []
    for columns, is_step in ((_run_sla(), False), (_step_sla(), True)):
        status, finished, deadline = columns
        query = select(
            Run.id,
            Run.runbook_id,
            (RunStep.name if is_step else null()).label("step"),
            Run.tenant_id,
            Tenant.name,
            deadline,
            finished,
            status,
        )
        if is_step:
            query = query.select_from(RunStep).join(Run, Run.id == RunStep.run_id)
        query = query.outerjoin(Tenant, Tenant.id == Run.tenant_id).where(
            _missed(status, finished, deadline, w)
        )
        for run_id, runbook_id, step, tid, tname, due, done, state in session.execute(query):
            due = aware(due)
            # As of the cut-off: a finish after it is not seen, so the report of a
            # week that is over does not change when the run finishes later.
            ended = None if done is None or aware(done) > w.cutoff else aware(done)
            if ended is None:
                state = OPEN_AT_CUTOFF
            # A run that failed before its deadline was not late: it missed by failing.
            late = None if ended is not None and ended < due else (ended or w.cutoff) - due
            found.append(
                Breach(
                    run_id=run_id,
                    runbook_id=runbook_id,
                    step=step,
                    tenant_id=tid,
                    tenant_name=tname,
                    deadline=due,
                    finished_at=ended,
                    status=state,
                    late_seconds=None if late is None else late.total_seconds(),
                )
            )
    found.sort(key=lambda b: (b.deadline, b.runbook_id, b.run_id, b.step or ""))
    return found


def activation(session: Session, w: Window) -> Activation:
    """Tenants activated in the week: how many, how many within 30 minutes, p50 and p90."""
    taken = epoch_micros(Tenant.activated_at) - epoch_micros(Tenant.approved_at)
    in_week = [Tenant.activated_at >= w.start, Tenant.activated_at < w.end]
    limit = SLA // timedelta(microseconds=1)
    totals = (
        select(
            func.count(taken).label("activated"),
            func.count(case((taken < limit, 1))).label("within_sla"),
        )
        .where(*in_week, Tenant.approved_at.is_not(None))
        .subquery("totals")
    )
    picks = nearest_rank(taken, *in_week)
    row = session.execute(select(totals, picks).select_from(totals.join(picks, true()))).one()
    return Activation(
        activated=int(row.activated),
        within_sla=int(row.within_sla),
        p50_seconds=seconds(row.p50),
        p90_seconds=seconds(row.p90),
    )


def run_outcomes(
    session: Session, w: Window
) -> Iterable[tuple[str | None, str | None, str, int, int]]:
    """(tenant id, tenant name, runbook, met, missed) of the run deadlines decided in ``w``."""
    met, missed = _met(*_run_sla(), w), _missed(*_run_sla(), w)
    query = (
        select(
            Run.tenant_id,
            Tenant.name,
            Run.runbook_id,
            func.count(case((met, 1))),
            func.count(case((missed, 1))),
        )
        .outerjoin(Tenant, Tenant.id == Run.tenant_id)
        .where(Run.sla_deadline >= w.start, or_(met, missed))
        .group_by(Run.tenant_id, Tenant.name, Run.runbook_id)
    )
    for tid, tname, runbook_id, n_met, n_missed in session.execute(query):
        yield tid, tname, str(runbook_id), int(n_met), int(n_missed)


def overdue_approvals(session: Session, cutoff: datetime) -> list[OverdueApproval]:
    """Approval gates open at ``cutoff`` whose SLA deadline was already past."""
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
            Tenant.name,
            step.started_at,
            step.sla_deadline,
        )
        .select_from(step)
        .join(Run, Run.id == step.run_id)
        .outerjoin(Tenant, Tenant.id == Run.tenant_id)
        .where(
            step.kind == "gate",
            step.sla_deadline < cutoff,
            or_(step.started_at.is_(None), step.started_at <= cutoff),
            still_open,
        )
        .order_by(step.sla_deadline, Run.id)
    )
    return [
        OverdueApproval(
            run_id=run_id,
            runbook_id=runbook_id,
            step=name,
            tenant_id=tid,
            tenant_name=tname,
            waiting_since=None if since is None else aware(since),
            deadline=aware(due),
            overdue_seconds=(cutoff - aware(due)).total_seconds(),
        )
        for run_id, runbook_id, name, tid, tname, since, due in session.execute(query)
    ]
