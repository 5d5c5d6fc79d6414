"""Tables of the ITIL records: one row per incident, change or problem, and its timeline.

A record is the control plane's own on the embedded default, or the mirror of a
ticket in the configured ITSM tool (``external_*``): either way every record
names its tenant (NULL: the platform as a whole), so "what happened to this
tenant" is one indexed query. ``correlation_id`` is the idempotency key of the
runbook step (or API call) that opened it: a step run again after a crash finds
the record it opened instead of opening a second. ``seq`` numbers records per
kind (``INC0000042``); the pair is unique so two writers cannot take one number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tenantops.db import Base


class ItilRecord(Base):
    """An incident, change or problem record."""

    __tablename__ = "itil_records"
    __table_args__ = (
        UniqueConstraint("kind", "seq"),
        # The KPIs' count of incidents per tenant, open or not, read from the index alone.
        Index("ix_itil_records_kind_tenant_id_state", "kind", "tenant_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[str | None] = mapped_column(String(36), index=True)
    tenant_name: Mapped[str | None] = mapped_column(String(63))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(32), index=True)
    # 1 critical, 2 high, 3 moderate, 4 low (ITIL's impact x urgency, as ServiceNow has it).
    priority: Mapped[int] = mapped_column(Integer)
    # manual, runbook, alert, sla, itsm: what opened it.
    source: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str | None] = mapped_column(String(36), index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    # The ITSM tool's ticket this row mirrors (NULL on the embedded default).
    external_system: Mapped[str | None] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(64))
    external_link: Mapped[str | None] = mapped_column(String(500))
    # When the tool was last asked for the mirrored ticket (``itil.refresh``'s order and claim).
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # The tool's version stamp of the state this row holds (ServiceNow's ``sys_mod_count``):
    # an answer with a lower one is older and left unrecorded (``itil.mirror``).
    external_version: Mapped[int | None] = mapped_column(Integer)
    # An incident or change caused by / fixing a known problem.
    problem_id: Mapped[str | None] = mapped_column(ForeignKey("itil_records.id"), index=True)
    assigned_to: Mapped[str | None] = mapped_column(String(200))
    opened_by: Mapped[str] = mapped_column(String(200))
    # Close notes, root cause, or the change's outcome.
    resolution: Mapped[str | None] = mapped_column(Text)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer)


class ItilNote(Base):
    """One entry of a record's timeline: a work note, a state change, a link.

    ``key`` makes an entry idempotent: a runbook step run again adds its work
    note once (NULL: an entry a person made).
    """

    __tablename__ = "itil_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("itil_records.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    author: Mapped[str] = mapped_column(String(200))
    # work_note, state, link, assignment
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    key: Mapped[str | None] = mapped_column(String(200), unique=True)
