"""The secrets inventory: one row per secret path of a tenant, never its value.

``next_due_at`` is kept with the row (last rotation + cycle) so "what is
overdue" is one indexed query across every tenant; ``announced`` and
``notified`` remember the last due notice (``<status>:<due date>``) so a
secret is announced and its owner told once per due period, not on every check.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantops.db import Base


class SecretEntry(Base):
    """A secret path of a tenant: who owns it, what for, how often it is rotated."""

    __tablename__ = "secret_inventory"

    tenant_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Relative to the tenant's prefix in its store, e.g. ``app/database``.
    path: Mapped[str] = mapped_column(String(300), primary_key=True)
    tenant_name: Mapped[str] = mapped_column(String(63))
    owner: Mapped[str | None] = mapped_column(String(200))
    purpose: Mapped[str | None] = mapped_column(String(300))
    rotation_days: Mapped[int] = mapped_column(Integer)
    # Set when an operator registered the fields above: the store's metadata no longer
    # overwrites them.
    registered_by: Mapped[str | None] = mapped_column(String(200))
    # What the store said at the last refresh: active, revoked, or absent (not there).
    store_status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int | None] = mapped_column(Integer)
    store_rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attested_by: Mapped[str | None] = mapped_column(String(200))
    evidence: Mapped[str | None] = mapped_column(String(500))
    last_rotated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    announced: Mapped[str | None] = mapped_column(String(40))
    notified: Mapped[str | None] = mapped_column(String(40))
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
