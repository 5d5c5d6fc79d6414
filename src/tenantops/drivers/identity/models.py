"""Tables of the local identity provider: groups, members, and its effect log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantops.db import Base
from tenantops.drivers.effects import EffectLog


class IdentityGroup(Base):
    """One group per tenant; ``enabled`` false means every member is locked out."""

    __tablename__ = "identity_groups"

    tenant_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_name: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdentityMember(Base):
    """A subject's grant in a tenant group."""

    __tablename__ = "identity_members"

    tenant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("identity_groups.tenant_id"), primary_key=True
    )
    subject: Mapped[str] = mapped_column(String(320), primary_key=True)
    permission: Mapped[str] = mapped_column(String(16))
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdentityEffect(EffectLog, Base):
    """Every change, once per idempotency key, with the state it produced."""

    __tablename__ = "identity_effects"
