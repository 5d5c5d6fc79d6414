"""The notification outbox: one row per message, whatever carries it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tenantops.db import Base


class OutboxMessage(Base):
    """A message to stakeholders; ``idempotency_key`` makes a step's message unique.

    ``status``: ``stored`` (no transport configured: the outbox is the mailbox),
    ``pending`` (to be delivered), ``sent``, ``failed`` (attempts exhausted;
    ``last_error`` says why).
    """

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    tenant_id: Mapped[str | None] = mapped_column(String(36), index=True)
    tenant_name: Mapped[str | None] = mapped_column(String(63))
    run_id: Mapped[str | None] = mapped_column(String(36))
    template: Mapped[str] = mapped_column(String(63))
    audience: Mapped[str] = mapped_column(String(32))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
