"""Chains of runs: one run of a runbook per period (a month, a week), each starting the next.

The report runbooks (``monthly-cost-report``, ``weekly-sla-report``) key their
runs by one input (``month``, ``week``). A period has at most one live run —
one that did not fail and was not cancelled — and it is started under a lock
named after the runbook and the period, so two replicas (or a re-run of the
step that schedules it) asking for the same period start one run.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.errors import Unprocessable
from tenantops.kit.clock import utcnow
from tenantops.kit.locks import serialise
from tenantops.runbooks import engine, spec
from tenantops.runbooks.models import Run

DEAD = ("failed", "cancelled")


def ensure_over(label: str, end: datetime, *, unit: str, now: datetime | None = None) -> None:
    """A 422 unless the period ``label`` (a ``unit``: week, month) has ended at ``now``:
    a chain run reports its period at once, and a period not over would be mailed
    incomplete and never replaced."""
    if (now or utcnow()) < end:
        raise Unprocessable(
            f"{label} is not over until {end:%Y-%m-%d %H:%M} UTC and its report "
            f"would be mailed incomplete; schedule a {unit} that is over (each run then "
            f"starts the next {unit}'s when that {unit} is over)",
            param=unit,
        )


def period_runs(session: Session, runbook_id: str, key: str, value: str) -> list[Run]:
    """Runs of ``runbook_id`` with input ``key`` = ``value`` that did not fail or get cancelled."""
    runs = session.execute(
        select(Run).where(Run.runbook_id == runbook_id).order_by(Run.created_at)
    ).scalars()
    return [r for r in runs if (r.inputs or {}).get(key) == value and r.status not in DEAD]


def open_chain_runs(session: Session, runbook_id: str) -> list[Run]:
    """The unfinished runs of ``runbook_id``, oldest first."""
    query = select(Run).where(Run.runbook_id == runbook_id, Run.finished_at.is_(None))
    return list(session.execute(query.order_by(Run.created_at)).scalars())


def start_once(
    session: Session, *, runbook_id: str, key: str, value: str, actor: Principal
) -> tuple[Run, bool]:
    """The run of the period ``key`` = ``value``: the live one, or a new one (True)."""
    serialise(session, f"chain:{runbook_id}:{value}")
    existing = period_runs(session, runbook_id, key, value)
    if existing:
        return existing[0], False
    run = engine.start_run(
        session,
        loaded=spec.get(spec.shipped(), runbook_id),
        actor=actor,
        inputs={key: value},
    )
    return run, True
