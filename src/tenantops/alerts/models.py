"""Tables of the alerts domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tenantops.db import Base


class Alert(Base):
    """One alert of one Alertmanager notification, stored before the receiver answers.

    ``dedupe_key`` is the SHA-256 of (group key, fingerprint, status, startsAt):
    Alertmanager re-sends a group every ``repeat_interval`` and retries failed
    deliveries, and the unique constraint on it lets concurrent copies of the
    same notification insert-or-ignore instead of racing a check-then-insert.
    A firing row is closed (``closed_at``) by the resolved row of the same
    fingerprint; ``run_id`` is the playbook run it started, joined or signalled.
    """

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    group_key: Mapped[str] = mapped_column(Text)
    receiver: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))
    alertname: Mapped[str] = mapped_column(String(200))
    tenant_id: Mapped[str | None] = mapped_column(String(36), index=True)
    tenant_label: Mapped[str | None] = mapped_column(String(200))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    generator_url: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    playbook: Mapped[str | None] = mapped_column(String(200))
    run_id: Mapped[str | None] = mapped_column(String(36))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)
    dispatch_error: Mapped[str | None] = mapped_column(Text)
