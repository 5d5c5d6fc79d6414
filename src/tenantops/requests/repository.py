"""Queries of requests: the runs of the request runbooks of one tenant, and their gates.

A request has no table of its own — it is a run — so these read the engine's
run rows, two bounded queries per page (runs, then their approval gates).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.runbooks.models import Run, RunStep

GATE_STEP = "approval"


def runs_of(
    session: Session, *, tenant_id: str, runbook_ids: Sequence[str], limit: int
) -> list[Run]:
    """The tenant's request runs, newest first, at most ``limit``."""
    query = (
        select(Run)
        .where(Run.tenant_id == tenant_id, Run.runbook_id.in_(list(runbook_ids)))
        .order_by(Run.created_at.desc(), Run.id.desc())
        .limit(limit)
    )
    return list(session.execute(query).scalars())


def gates_of(session: Session, run_ids: Sequence[str]) -> dict[str, RunStep]:
    """The approval gate of each run, by run id."""
    if not run_ids:
        return {}
    query = select(RunStep).where(RunStep.run_id.in_(list(run_ids)), RunStep.name == GATE_STEP)
    return {row.run_id: row for row in session.execute(query).scalars()}


def open_runs_of(session: Session, runbook_id: str) -> list[Run]:
    """The unfinished runs of ``runbook_id`` across every tenant (requests waiting are few)."""
    query = select(Run).where(Run.runbook_id == runbook_id, Run.finished_at.is_(None))
    return list(session.execute(query).scalars())
