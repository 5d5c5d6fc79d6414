"""Tables of on-call: the applied configuration, pages, and each page's timeline.

The configuration (rotations and escalation policies) is one document, applied
whole; every version is kept with who applied it, so "who was on call for this
tenant last Tuesday night" can be answered from the version in force then.

A page is one thing on-call must answer (an incident record, an SLA breach).
``key`` names what it is about (``itil:<record id>``, ``sla:<run>/<step>``): one
page per key, so two sweeps or two replicas cannot page twice for one incident.
``next_at`` is when it escalates next unless acknowledged (indexed: the sweep is
one range query); NULL once acknowledged, resolved, or out of levels.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tenantops.db import Base


class OncallConfig(Base):
    """One applied version of the on-call document (rotations, policies, routing)."""

    __tablename__ = "oncall_configs"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(71))
    applied_by: Mapped[str] = mapped_column(String(200))
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Page(Base):
    """One page: who was told, at which level of its policy, and who answered."""

    __tablename__ = "oncall_pages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    tenant_id: Mapped[str | None] = mapped_column(String(36), index=True)
    record_id: Mapped[str | None] = mapped_column(String(36), index=True)
    summary: Mapped[str] = mapped_column(String(500))
    severity: Mapped[str] = mapped_column(String(16))
    policy: Mapped[str] = mapped_column(String(100))
    config_version: Mapped[int | None] = mapped_column(Integer)
    # 0-based index into the policy's levels, and how many times the levels went round.
    level: Mapped[int] = mapped_column(Integer)
    round: Mapped[int] = mapped_column(Integer)
    # triggered, acknowledged, resolved
    status: Mapped[str] = mapped_column(String(16), index=True)
    next_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    triggered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer)


class PageEvent(Base):
    """One entry of a page's timeline: triggered, notified, escalated, acknowledged, ..."""

    __tablename__ = "oncall_page_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    page_id: Mapped[str] = mapped_column(ForeignKey("oncall_pages.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event: Mapped[str] = mapped_column(String(24))
    level: Mapped[int | None] = mapped_column(Integer)
    # Who was told (addresses / channel recipients), never a secret.
    targets: Mapped[list[str]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text)
