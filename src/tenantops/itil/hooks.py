"""What a record change sets off besides itself: its event, its audit view, on-call.

Kept apart from ``service`` so the rules there read as rules. On-call hears of
incidents only: opening one at priority 1 or 2 pages (``itil:<record id>``),
taking it in hand acknowledges the page, resolving, closing or cancelling it
resolves the page — all in the caller's transaction, so a record and its page
are written together or not at all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.events import catalogue
from tenantops.itil import states
from tenantops.itil.models import ItilRecord
from tenantops.oncall import service as oncall

SEVERITY = {1: "critical", 2: "high"}


def audited(record: ItilRecord) -> dict[str, Any]:
    """The fields of a record an audit entry keeps (no description: it may be long)."""
    return {
        "number": record.number,
        "kind": record.kind,
        "state": record.state,
        "priority": record.priority,
        "title": record.title,
        "tenant_id": record.tenant_id,
        "external_system": record.external_system,
        "external_id": record.external_id,
        "problem_id": record.problem_id,
        "correlation_id": record.correlation_id,
    }


def event(
    record: ItilRecord, actor: Principal, from_state: str | None
) -> catalogue.ItilRecordChanged:
    """The event data of a record change."""
    return catalogue.ItilRecordChanged(
        tenant_id=record.tenant_id,
        tenant_name=record.tenant_name,
        actor=actor.subject,
        record_id=record.id,
        number=record.number,
        kind=states.Kind(record.kind).value,
        state=record.state,
        from_state=from_state,
        priority=record.priority,
        title=record.title,
        assigned_to=record.assigned_to,
        problem_id=record.problem_id,
        run_id=record.run_id,
        external_link=record.external_link,
    )


def page_key(record: ItilRecord) -> str:
    """The on-call page's key for a record."""
    return f"itil:{record.id}"


def opened(session: Session, record: ItilRecord, actor: Principal) -> None:
    """A priority 1 or 2 incident pages on-call."""
    severity = SEVERITY.get(record.priority)
    if record.kind != states.Kind.INCIDENT.value or severity is None:
        return
    oncall.trigger(
        session,
        key=page_key(record),
        summary=f"{record.number} {record.title}"[:500],
        severity=severity,
        actor=actor,
        tenant_id=record.tenant_id,
        record_id=record.id,
    )


def moved(session: Session, record: ItilRecord, actor: Principal) -> None:
    """In progress acknowledges an incident's page; resolved, closed or cancelled end it."""
    if record.kind != states.Kind.INCIDENT.value:
        return
    if record.state == states.IN_PROGRESS:
        oncall.acknowledge(session, key=page_key(record), actor=actor)
    elif record.state in (states.RESOLVED, *states.TERMINAL):
        oncall.resolve(session, key=page_key(record), actor=actor)
