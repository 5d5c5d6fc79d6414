"""Tables of the event outbox, the webhook subscriptions and their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from tenantops.db import Base

# SQLite numbers rows only through INTEGER PRIMARY KEY (its rowid).
Seq = BigInteger().with_variant(Integer(), "sqlite")


class OutboxEvent(Base):
    """An event, written in the transaction of the change it reports.

    ``seq`` orders events as their transactions committed: every change that
    emits an event also appends to the audit chain, whose head lock it holds
    until commit, and the event is inserted after that lock is taken.
    ``published_at`` is set once the configured broker acknowledged it;
    ``dispatched_at`` once a delivery row exists for every matching webhook.
    """

    __tablename__ = "event_outbox"
    __table_args__ = (
        Index("ix_event_outbox_unpublished", "published_at", "seq"),
        Index("ix_event_outbox_undispatched", "dispatched_at", "seq"),
    )

    seq: Mapped[int] = mapped_column(Seq, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    topic: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[str | None] = mapped_column(String(36), index=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Subscription(Base):
    """A webhook endpoint and the event types it wants (``*`` as a suffix wildcard).

    Its signing secret is never stored: it is derived from the server's signing
    key and the subscription id (see ``webhooks.secret_for``).
    """

    __tablename__ = "event_subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    types: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """One event to one webhook: ``pending`` until delivered, ``dead`` after the last try."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        Index("ix_event_deliveries_due", "status", "next_attempt_at"),
        Index("ix_event_deliveries_subscription", "subscription_id", "event_seq", unique=True),
        # Retention looks up deliveries by event (and the foreign key is checked
        # by it when an event is deleted).
        Index("ix_event_deliveries_event_seq", "event_seq"),
        # The relay's "is an earlier delivery of this tenant still backing off?"
        # looks at pending rows only; delivered ones pile up and must not be read.
        Index(
            "ix_event_deliveries_pending",
            "subscription_id",
            "event_seq",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("event_subscriptions.id"))
    event_seq: Mapped[int] = mapped_column(ForeignKey("event_outbox.seq"))
    tenant_id: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RelayLease(Base):
    """Which relay publishes now: one at a time, so no event goes out twice in normal operation."""

    __tablename__ = "event_relay_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Retention(Base):
    """How far retention has deleted the outbox: every event up to ``pruned_through`` may be gone.

    One row (``outbox``), created by the migration, moved forward in the
    transaction of each deleting batch; ``GET /api/v1/events`` shows it, so a
    consumer whose position is below it knows it may have missed events.
    """

    __tablename__ = "event_retention"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    pruned_through: Mapped[int] = mapped_column(Seq)
