"""Tables of the local queue-access driver: per-tenant ACL state and its effect log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantops.db import Base
from tenantops.drivers.effects import EffectLog


class QueueAccessRecord(Base):
    """What the broker would enforce for one tenant."""

    __tablename__ = "access_tenants"

    tenant_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_name: Mapped[str] = mapped_column(String(63), index=True)
    queues_paused: Mapped[bool] = mapped_column(Boolean)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rate: Mapped[float | None] = mapped_column(Float)
    burst: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AccessEffect(EffectLog, Base):
    """Every change, once per idempotency key, with the state it produced."""

    __tablename__ = "access_effects"
