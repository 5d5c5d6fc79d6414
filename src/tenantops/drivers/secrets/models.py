"""Tables of the local secret store: store and path references, and its effect log.

There is deliberately no column that could hold a secret's value.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantops.db import Base
from tenantops.drivers.effects import EffectLog


class SecretStoreRecord(Base):
    """One store per tenant; every path reference lives under ``prefix``."""

    __tablename__ = "secret_stores"

    tenant_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_name: Mapped[str] = mapped_column(String(63), index=True)
    store_ref: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SecretPathRecord(Base):
    """A path reference (full path, prefix included) and its metadata."""

    __tablename__ = "secret_paths"

    path: Mapped[str] = mapped_column(String(400), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("secret_stores.tenant_id"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    meta: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When the current version began; NULL on rows from before rotation was tracked.
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SecretEffect(EffectLog, Base):
    """Every change, once per idempotency key, with the state it produced."""

    __tablename__ = "secret_effects"
