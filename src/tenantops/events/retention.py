"""Retention of the outbox: events and deliveries that are done and old are deleted.

The outbox is a queue with a readable tail, not the record: the audit chain
keeps every change for good, and events reached their broker and webhooks
long ago. Without a window the outbox and its deliveries would grow by about
fifty rows per tenant lifecycle for ever.

What goes, once older than the window (``events.retention_days``):

- deliveries ``delivered`` or ``cancelled``, and ``dead`` ones whose webhook
  subscription was deleted (they can no longer be redelivered);
- events that were published and dispatched and have no delivery left.

What stays whatever its age: an event not yet published or dispatched, a
``pending`` delivery, and a ``dead`` one of a live subscription (it waits for
an operator to redeliver it; ``tenantops events deliveries --status dead``),
with their events.

Age is taken by ``seq``, which is commit order: everything before the first
event of the window is old, except the newest event, which always stays (see
``_boundary``). Each batch is its own short transaction, so a
large backlog never holds a long lock and a crash loses nothing but time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import CursorResult, case, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from tenantops.db import Database
from tenantops.events.models import Delivery, OutboxEvent, Retention, Subscription
from tenantops.kit.clock import as_utc

BATCH = 1000
MARK = "outbox"  # the one row of event_retention


@dataclass(frozen=True)
class Pruned:
    """How many rows one ``prune`` call deleted, and whether old rows may remain."""

    events: int = 0
    deliveries: int = 0
    more: bool = False  # stopped at ``max_batches``: call again


def _first_at_or_after(session: Session, seq: int) -> tuple[int, datetime] | None:
    row = session.execute(
        select(OutboxEvent.seq, OutboxEvent.time)
        .where(OutboxEvent.seq >= seq)
        .order_by(OutboxEvent.seq)
        .limit(1)
    ).first()
    return None if row is None else (int(row.seq), as_utc(row.time))


def _boundary(session: Session, before: datetime) -> int:
    """The first seq of the window: every event below it is older than ``before``.

    A binary search over ``seq`` (primary-key lookups only, no index on
    ``time``; a first clean-up of millions of rows costs some twenty reads).
    The newest event is never below it: on SQLite ``seq`` is a rowid without
    AUTOINCREMENT, and deleting the highest one would hand its number, and
    those below it, out again — a consumer paging by ``seq`` would skip them.
    """
    lo = session.scalar(select(func.min(OutboxEvent.seq)))
    hi = session.scalar(select(func.max(OutboxEvent.seq)))
    if lo is None or hi is None:
        return 0
    lo, hi = int(lo), int(hi)
    while lo < hi:
        mid = (lo + hi) // 2
        found = _first_at_or_after(session, mid)
        if found is not None and found[1] >= before:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _delete_deliveries(session: Session, boundary: int, batch: int) -> int:
    """Delete up to ``batch`` finished deliveries of old events; how many went."""
    retired = (
        select(Subscription.id)
        .where(Subscription.id == Delivery.subscription_id, Subscription.deleted_at.is_not(None))
        .exists()
    )
    done = or_(
        Delivery.status.in_(("delivered", "cancelled")), (Delivery.status == "dead") & retired
    )
    ids = select(Delivery.id).where(Delivery.event_seq < boundary, done).limit(batch)
    # The condition again on the rows themselves: a delivery redelivered (pending
    # again) after the subquery picked it is re-checked by PostgreSQL and kept.
    statement = delete(Delivery).where(Delivery.id.in_(ids.scalar_subquery()), done)
    result = cast(CursorResult[tuple[()]], session.execute(statement))
    return int(result.rowcount or 0)


def _delete_events(session: Session, boundary: int, batch: int) -> int:
    """Delete up to ``batch`` old events that are handed on; move the mark; how many went."""
    ids = (
        select(OutboxEvent.seq)
        .where(
            OutboxEvent.seq < boundary,
            OutboxEvent.published_at.is_not(None),
            OutboxEvent.dispatched_at.is_not(None),
            ~exists().where(Delivery.event_seq == OutboxEvent.seq),
        )
        .order_by(OutboxEvent.seq)
        .limit(batch)
    )
    statement = (
        delete(OutboxEvent)
        .where(OutboxEvent.seq.in_(ids.scalar_subquery()))
        .returning(OutboxEvent.seq)
    )
    seqs = [int(seq) for seq in session.scalars(statement)]
    if seqs:
        highest, mark = max(seqs), Retention.pruned_through
        moved = session.execute(
            update(Retention)
            .where(Retention.name == MARK)
            .values(pruned_through=case((mark < highest, highest), else_=mark))
        )
        if not cast(CursorResult[tuple[()]], moved).rowcount:  # the migration's row is gone
            session.add(Retention(name=MARK, pruned_through=highest))
    return len(seqs)


def pruned_through(session: Session) -> int:
    """The highest event sequence retention has deleted (0: none): events up to it may be gone."""
    return int(session.scalar(select(Retention.pruned_through).where(Retention.name == MARK)) or 0)


def prune(
    db: Database, *, before: datetime, batch: int = BATCH, max_batches: int | None = None
) -> Pruned:
    """Delete what is done and older than ``before``, ``batch`` rows per transaction.

    Deliveries go first, so their events can follow in the same call. With
    ``max_batches`` it stops after that many transactions and says whether
    more is left (the relay prunes a little per round, not all at once).
    """
    with db.read() as session:
        boundary = _boundary(session, before)
    counts = {"deliveries": 0, "events": 0}
    done = 0
    for what, delete_some in (("deliveries", _delete_deliveries), ("events", _delete_events)):
        while max_batches is None or done < max_batches:
            with db.write() as session:
                deleted = delete_some(session, boundary, batch)
            counts[what] += deleted
            done += 1
            if deleted < batch:
                break
        else:
            return Pruned(events=counts["events"], deliveries=counts["deliveries"], more=True)
    return Pruned(events=counts["events"], deliveries=counts["deliveries"])
