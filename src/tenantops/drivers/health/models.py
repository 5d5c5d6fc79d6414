"""Tables of the health driver: passing results by idempotency key, and the probe's values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantops.db import Base


class HealthResult(Base):
    """A check that passed, once per idempotency key (the effect log of the health driver)."""

    __tablename__ = "health_results"

    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str] = mapped_column(String(36), index=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProbeValue(Base):
    """The last value a synthetic test wrote through the built-in probe of a tenant."""

    __tablename__ = "health_probe_values"

    tenant_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    written_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
