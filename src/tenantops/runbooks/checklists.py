"""What the checklists (Budget Review, Access Review) share: one open run, and its gate record.

A checklist is a ``kind: checklist`` runbook started against one tenant by a
person; its gates are ticked by someone else (the engine's segregation of
duties) and its last step writes down what they decided. These helpers keep
the two rules every checklist has in one place: a second open review of the
same thing is a 409, and the outcome is read from the gates' own evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy.orm import Session

from tenantops.errors import Conflict, NotFound
from tenantops.runbooks import engine
from tenantops.runbooks.models import Run, RunStep


def refuse_second_open_run(
    session: Session,
    *,
    tenant_id: str,
    runbook_id: str,
    what: str,
    same: Callable[[Run], bool] = lambda _run: True,
) -> None:
    """``Conflict`` naming the open run of ``runbook_id`` for the tenant that ``same`` matches.

    The caller serializes first (locks the tenant row, or takes the audit chain's
    lock as the compliance starts do), so two starts at once cannot both find no
    open run and both start one.
    """
    open_runs = [
        r for r in engine.open_runs(session, tenant_id=tenant_id, runbook_id=runbook_id) if same(r)
    ]
    if open_runs:
        raise Conflict(f"{what} is open: run {open_runs[0].id}", run_id=open_runs[0].id)


def gate_decisions(session: Session, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's approved gates in order: who decided, in which role, the comment, when."""
    gates: dict[str, dict[str, Any]] = {}
    for row in engine.steps_of(session, run_id):
        if row.kind == "gate" and row.status == "succeeded":
            evidence = row.evidence or {}
            gates[row.name] = {
                "by": evidence.get("by"),
                "role": evidence.get("role"),
                "comment": evidence.get("comment"),
                "at": evidence.get("signalled_at"),
            }
    return gates


def decision_word(comment: str, words: Collection[str]) -> str | None:
    """The comment's first word if it is one of ``words`` (``'Raise to 3000'`` -> ``raise``)."""
    word = comment.split(maxsplit=1)[0].lower().strip(":,.;") if comment else ""
    return word if word in words else None


def finished_step(
    session: Session, *, run_id: str, tenant_id: str, runbook_id: str, step: str, what: str
) -> RunStep:
    """Step ``step`` of run ``run_id`` once it succeeded, e.g. to serve the file it wrote.

    ``NotFound`` (naming ``what``) unless the run is one of ``runbook_id`` against
    ``tenant_id``; ``NotFound`` too while the step has not succeeded.
    """
    try:
        run: Run | None = engine.get_run(session, run_id)
    except NotFound:
        run = None
    if run is None or run.runbook_id != runbook_id or run.tenant_id != tenant_id:
        raise NotFound(f"no {what}")
    found = next((s for s in engine.steps_of(session, run.id) if s.name == step), None)
    if found is None or found.status != "succeeded":
        raise NotFound(f"{what}: step {step} has not succeeded yet")
    return found
