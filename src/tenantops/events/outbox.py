"""Write an event in the caller's transaction; read the backlog.

``emit`` only inserts a row: it commits or rolls back with the change it
reports, so a rolled-back change publishes nothing and a committed one is
never lost. The relay publishes later (``events.relay``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from tenantops.events.catalogue import CATALOGUE, EventData, EventType
from tenantops.events.models import Delivery, OutboxEvent
from tenantops.kit.bulk import insert_many
from tenantops.kit.clock import utcnow
from tenantops.kit.ids import new_id

_OUTBOX = cast(Table, OutboxEvent.__table__)


class Event(NamedTuple):
    """An event to emit: its type and its data."""

    kind: EventType
    data: EventData


def _row(kind: EventType, data: EventData) -> dict[str, Any]:
    if CATALOGUE.get(kind.type) is not kind:
        raise ValueError(f"event type {kind.type} is not in the catalogue")
    if not isinstance(data, kind.data):
        raise TypeError(f"{kind.type} carries {kind.data.__name__}, not {type(data).__name__}")
    return {
        "id": new_id(),
        "type": kind.type,
        "topic": kind.topic,
        "tenant_id": data.tenant_id,
        "time": utcnow(),
        "data": data.model_dump(mode="json"),
    }


def emit(session: Session, kind: EventType, data: EventData) -> OutboxEvent:
    """Add one event of ``kind`` to the outbox, in ``session``'s transaction."""
    event = OutboxEvent(**_row(kind, data))
    session.add(event)
    return event


def emit_many(session: Session, events: Sequence[Event]) -> None:
    """Add ``events`` in order with one statement (the batch path of the engine)."""
    if events:
        insert_many(session, _OUTBOX, [_row(e.kind, e.data) for e in events])


def backlog(session: Session) -> dict[str, int]:
    """How much waits: events not yet published or dispatched, deliveries pending or dead."""
    unpublished = session.scalar(
        select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
    )
    undispatched = session.scalar(
        select(func.count()).select_from(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None))
    )
    by_status: dict[str, int] = dict(
        session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    )
    return {
        "unpublished": int(unpublished or 0),
        "undispatched": int(undispatched or 0),
        "deliveries_pending": int(by_status.get("pending", 0)),
        "deliveries_dead": int(by_status.get("dead", 0)),
    }
