"""ORM rows of the tenant registry."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantops.db import Base


class Tenant(Base):
    """A tenant of the platform. ``state`` changes only through the lifecycle table."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    business_owner: Mapped[str] = mapped_column(String(320), index=True)
    compliance_classification: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(64), index=True)
    tier: Mapped[str] = mapped_column(String(32), index=True)
    monthly_budget: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    contacts: Mapped[list[str]] = mapped_column(JSON)
    ticket_ref: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(32), index=True)
    requested_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Milestones, set once by the transition that reaches them (with its audit
    # entry): both approvals in (``approved``), first verified (``active``).
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__: dict[str, Any] = {"version_id_col": version}


class IdempotencyRecord(Base):
    """A create request remembered by (principal, Idempotency-Key)."""

    __tablename__ = "idempotency_keys"

    principal: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
