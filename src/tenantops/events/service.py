"""Read the event stream; manage webhook subscriptions and their deliveries.

Subscriptions and redeliveries are changes like any other: audited, in the
caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.errors import Conflict, NotFound
from tenantops.events.envelope import cloudevent
from tenantops.events.models import Delivery, OutboxEvent, Subscription
from tenantops.events.relay import matches
from tenantops.events.schemas import DeliveryRead, SubscriptionCreate
from tenantops.events.webhooks import secret_for
from tenantops.kit.clock import utcnow
from tenantops.kit.ids import new_id


def stream(
    session: Session,
    *,
    after: int,
    types: Sequence[str] = (),
    tenant_id: str | None = None,
    limit: int = 100,
    hidden: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], int]:
    """CloudEvents with ``seq > after``, oldest first, and the last seq seen; types
    matching ``hidden`` are left out (and passed over)."""
    query = select(OutboxEvent).where(OutboxEvent.seq > after).order_by(OutboxEvent.seq)
    if tenant_id is not None:
        query = query.where(OutboxEvent.tenant_id == tenant_id)
    last = after
    items: list[dict[str, Any]] = []
    # Type patterns (wildcards) are matched here; pages are read until full, but
    # at most ten: a filter that matches little must not read the whole outbox in
    # one request (the caller goes on from ``last``).
    for _ in range(10):
        if len(items) >= limit:
            break
        rows = session.execute(query.where(OutboxEvent.seq > last).limit(limit)).scalars().all()
        if not rows:
            break
        for row in rows:
            last = row.seq
            if _shown(row.type, types, hidden):
                items.append(cloudevent(row))
                if len(items) == limit:
                    break
    return items, last


def _shown(event_type: str, types: Sequence[str], hidden: Sequence[str]) -> bool:
    return (not types or matches(types, event_type)) and not matches(hidden, event_type)


def latest(
    session: Session,
    *,
    last: int,
    types: Sequence[str] = (),
    tenant_id: str | None = None,
    hidden: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], int]:
    """The newest ``last`` matching events, oldest first (what ``events tail`` shows first)."""
    query = select(OutboxEvent).order_by(OutboxEvent.seq.desc())
    if tenant_id is not None:
        query = query.where(OutboxEvent.tenant_id == tenant_id)
    end = session.scalar(select(OutboxEvent.seq).order_by(OutboxEvent.seq.desc()).limit(1)) or 0
    picked: list[OutboxEvent] = []
    for row in session.execute(query.limit(max(last * 20, 1000))).scalars():
        if _shown(row.type, types, hidden):
            picked.append(row)
            if len(picked) == last:
                break
    return [cloudevent(r) for r in reversed(picked)], end


def emitted(
    session: Session, *, event_type: str, tenant_id: str | None, since: datetime
) -> list[dict[str, Any]]:
    """The data of the ``event_type`` events about ``tenant_id`` in the outbox since ``since``.

    ``tenant_id`` ``None``: the events bound to no tenant. For another domain
    asking whether it announced something already; retention (ADR 0030) may
    have pruned old rows.
    """
    about = (
        OutboxEvent.tenant_id.is_(None) if tenant_id is None else OutboxEvent.tenant_id == tenant_id
    )
    rows = session.execute(
        select(OutboxEvent.data).where(
            OutboxEvent.type == event_type, about, OutboxEvent.time >= since
        )
    ).scalars()
    return [d for d in rows if isinstance(d, dict)]


def create_subscription(
    session: Session, *, principal: Principal, data: SubscriptionCreate, key: bytes
) -> tuple[Subscription, str]:
    sub = Subscription(
        id=new_id(),
        url=str(data.url),
        types=data.types,
        description=data.description,
        created_by=principal.subject,
        created_at=utcnow(),
    )
    session.add(sub)
    session.flush()
    audit.record(
        session,
        actor=principal,
        action="events.subscription.created",
        tenant_id=None,
        changes={},
        detail={"subscription_id": sub.id, "url": sub.url, "types": sub.types},
    )
    return sub, secret_for(key, sub.id)


def list_subscriptions(session: Session) -> list[Subscription]:
    return list(
        session.execute(
            select(Subscription)
            .where(Subscription.deleted_at.is_(None))
            .order_by(Subscription.created_at)
        ).scalars()
    )


def delete_subscription(session: Session, *, principal: Principal, subscription_id: str) -> None:
    """Stop a webhook: no new deliveries; pending ones are cancelled."""
    sub = session.get(Subscription, subscription_id, with_for_update=True)
    if sub is None or sub.deleted_at is not None:
        raise NotFound(f"no webhook subscription {subscription_id!r}")
    sub.deleted_at = utcnow()
    cancelled = session.execute(
        update(Delivery)
        .where(Delivery.subscription_id == sub.id, Delivery.status == "pending")
        .values(status="cancelled", next_attempt_at=None)
    )
    audit.record(
        session,
        actor=principal,
        action="events.subscription.deleted",
        tenant_id=None,
        changes={},
        detail={
            "subscription_id": sub.id,
            "url": sub.url,
            "cancelled_deliveries": int(getattr(cancelled, "rowcount", 0) or 0),
        },
    )


def _read(delivery: Delivery, event: OutboxEvent) -> DeliveryRead:
    return DeliveryRead.model_validate(
        {
            **{c: getattr(delivery, c) for c in DeliveryRead.model_fields if hasattr(delivery, c)},
            "event_id": event.id,
            "event_type": event.type,
        }
    )


def list_deliveries(
    session: Session,
    *,
    status: str | None = None,
    subscription_id: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> tuple[list[DeliveryRead], str | None]:
    """Deliveries, newest event first; ``before`` is the cursor (an event seq)."""
    query = (
        select(Delivery, OutboxEvent)
        .join(OutboxEvent, OutboxEvent.seq == Delivery.event_seq)
        .order_by(Delivery.event_seq.desc(), Delivery.id)
    )
    if status is not None:
        query = query.where(Delivery.status == status)
    if subscription_id is not None:
        query = query.where(Delivery.subscription_id == subscription_id)
    if before is not None:
        query = query.where(Delivery.event_seq < before)
    rows = session.execute(query.limit(limit + 1)).all()
    items = [_read(d, e) for d, e in rows[:limit]]
    more = len(rows) > limit
    return items, (str(items[-1].event_seq) if more and items else None)


def redeliver(session: Session, *, principal: Principal, delivery_id: str) -> DeliveryRead:
    """Send a dead (or delivered) event to its webhook again, with a fresh set of attempts."""
    delivery = session.get(Delivery, delivery_id, with_for_update=True)
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id!r}")
    if delivery.status == "pending":
        raise Conflict(f"delivery {delivery_id} is still pending; it will be retried by itself")
    sub = session.get(Subscription, delivery.subscription_id)
    if sub is None or sub.deleted_at is not None:
        raise Conflict("its webhook subscription was deleted")
    before = delivery.status
    delivery.status, delivery.attempts = "pending", 0
    delivery.next_attempt_at, delivery.delivered_at = utcnow(), None
    event = session.get(OutboxEvent, delivery.event_seq)
    assert event is not None
    audit.record(
        session,
        actor=principal,
        action="events.delivery.redelivered",
        tenant_id=delivery.tenant_id,
        changes={"status": {"before": before, "after": "pending"}},
        detail={"delivery_id": delivery.id, "event_id": event.id, "subscription_id": sub.id},
    )
    return _read(delivery, event)
