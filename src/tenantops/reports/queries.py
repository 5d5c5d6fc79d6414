"""The figures of the weekly SLA/SLO report, read from the domains that own them.

Deadlines of runs and steps come from the runbooks' read model
(``tenantops.runbooks.deadlines``, where the rules are: a deadline judged once,
in the week it is decided, everything as of the cut-off, so the report of a
week that is over never changes); tenant names from the tenants service, one
query per report; activation time, approval (``approved_at``) to
``activated_at``, with the dashboard's nearest-rank percentiles and 30-minute
SLA, from the KPI service. No other domain's table is read here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from tenantops.kpis import service as kpis
from tenantops.reports.schemas import (
    Activation,
    Attainment,
    Breach,
    OverdueApproval,
    RunbookWeek,
)
from tenantops.runbooks import deadlines
from tenantops.runbooks.deadlines import Window as Window
from tenantops.tenants import service as tenants


def _names(session: Session, ids: Collection[str | None]) -> dict[str, str]:
    return tenants.names_of(session, {i for i in ids if i is not None})


def runbook_weeks(session: Session, w: Window) -> dict[str, RunbookWeek]:
    """Per runbook: runs started and finished in the week, and the deadlines decided in it."""
    return {
        runbook_id: RunbookWeek(
            runbook_id=runbook_id,
            started=c.started,
            finished=c.finished,
            succeeded=c.succeeded,
            failed=c.failed,
            cancelled=c.cancelled,
            runs=Attainment(met=c.runs_met, missed=c.runs_missed),
            steps=Attainment(met=c.steps_met, missed=c.steps_missed),
        )
        for runbook_id, c in deadlines.runbook_counts(session, w).items()
    }


def breaches(session: Session, w: Window) -> list[Breach]:
    """Every deadline missed in the week, runs and steps, with the run and the tenant."""
    missed = deadlines.missed_deadlines(session, w)
    names = _names(session, [m.tenant_id for m in missed])
    return [
        Breach(
            run_id=m.run_id,
            runbook_id=m.runbook_id,
            step=m.step,
            tenant_id=m.tenant_id,
            tenant_name=names.get(m.tenant_id) if m.tenant_id else None,
            deadline=m.deadline,
            finished_at=m.finished_at,
            status=m.status,
            late_seconds=m.late_seconds,
        )
        for m in missed
    ]


def activation(session: Session, w: Window) -> Activation:
    """Tenants activated in the week: how many, how many within 30 minutes, p50 and p90."""
    p = kpis.provisioning(session, start=w.start, end=w.end)
    return Activation(
        activated=p.activated,
        within_sla=p.within_sla,
        p50_seconds=p.p50_seconds,
        p90_seconds=p.p90_seconds,
    )


def run_outcomes(
    session: Session, w: Window
) -> Iterable[tuple[str | None, str | None, str, int, int]]:
    """(tenant id, tenant name, runbook, met, missed) of the run deadlines decided in ``w``."""
    outcomes = list(deadlines.run_outcomes(session, w))
    names = _names(session, [o.tenant_id for o in outcomes])
    for o in outcomes:
        name = names.get(o.tenant_id) if o.tenant_id else None
        yield o.tenant_id, name, o.runbook_id, o.met, o.missed


def overdue_approvals(session: Session, cutoff: datetime) -> list[OverdueApproval]:
    """Approval gates open at ``cutoff`` whose SLA deadline was already past."""
    gates = deadlines.overdue_gates(session, cutoff)
    names = _names(session, [g.tenant_id for g in gates])
    return [
        OverdueApproval(
            run_id=g.run_id,
            runbook_id=g.runbook_id,
            step=g.step,
            tenant_id=g.tenant_id,
            tenant_name=names.get(g.tenant_id) if g.tenant_id else None,
            waiting_since=g.waiting_since,
            deadline=g.deadline,
            overdue_seconds=g.overdue_seconds,
        )
        for g in gates
    ]
