"""The secrets inventory: one row per secret path of a tenant, never its value.

``next_due_at`` is kept with the row (last rotation + cycle, or the store's
last revocation if that is earlier and nothing was rotated since) and
``due_soon_at`` with it, so "what is overdue" or "due soon" is one indexed
query across every tenant; ``announced`` and ``notified`` remember the last due
notice (``<status>:<due date>``) so a secret is announced and its owner told
once per due period, not on every check.
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
    # When it becomes "due soon" (``next_due_at`` less its warning): each status is one
    # indexed range, so a status filter is a query and ``limit`` holds.
    due_soon_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # When the store was last revoked (kept after a restore): a secret not rotated since
    # may have leaked, so it is due from then.
    store_revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    announced: Mapped[str | None] = mapped_column(String(40))
    notified: Mapped[str | None] = mapped_column(String(40))
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The last check that saw it in the store or saw it leave; NULL: never in the store
    # (an operator registered it ahead of the store).
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
