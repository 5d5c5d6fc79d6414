"""API schemas of the ITIL records: what is read, what a caller sends."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tenantops.itil.states import Kind

Priority = Field(
    ge=1, le=4, description="1 critical, 2 high, 3 moderate, 4 low (1 and 2 page on-call)"
)


class RecordRead(BaseModel):
    """An incident, change or problem, and the tenant it belongs to (null: the platform)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    number: str = Field(description="INC0000042, CHG…, PRB…: what people quote.")
    kind: Kind
    state: str
    priority: int
    title: str
    description: str
    tenant_id: str | None
    tenant_name: str | None
    source: str = Field(description="What opened it: manual, runbook, alert, sla, itsm.")
    run_id: str | None
    correlation_id: str | None
    external_system: str | None = Field(description="The ITSM tool this row mirrors, if any.")
    external_id: str | None
    external_link: str | None
    problem_id: str | None = Field(description="The known problem this record is linked to.")
    assigned_to: str | None
    opened_by: str
    resolution: str | None
    fields: dict[str, Any]
    opened_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    version: int = Field(description="Bumped by every change; send it back as If-Match.")
    replayed: bool = Field(
        False, description="True when an open with this correlation id had already happened."
    )


class NoteRead(BaseModel):
    """One entry of a record's timeline."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime
    author: str
    kind: str = Field(description="work_note, state, link or assignment")
    text: str


class RecordDetail(RecordRead):
    """A record with its timeline, oldest entry first."""

    timeline: list[NoteRead]
    next_states: list[str] = Field(description="Where the record may move from here.")


class RecordPage(BaseModel):
    """One page of records, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[RecordRead]
    next_cursor: str | None


class RecordOpen(BaseModel):
    """A record to open."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20000)
    priority: int = Priority
    tenant: str | None = Field(
        default=None, min_length=1, max_length=63, description="Tenant id or name; null: platform"
    )
    correlation_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Idempotency key: opening again with it returns the record it opened.",
    )
    problem: str | None = Field(
        default=None, max_length=40, description="A problem's id or number this record is about."
    )
    fields: dict[str, str] = Field(default_factory=dict, max_length=50)


class TransitionCreate(BaseModel):
    """Move a record to ``state``; resolving (a change: closing) needs ``resolution``."""

    model_config = ConfigDict(extra="forbid")

    state: str = Field(min_length=1, max_length=32, examples=["in_progress"])
    resolution: str | None = Field(default=None, min_length=1, max_length=20000)
    note: str | None = Field(default=None, min_length=1, max_length=20000)


class NoteCreate(BaseModel):
    """A work note; ``key`` makes it idempotent (sent twice, written once)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=20000)
    key: str | None = Field(default=None, min_length=1, max_length=200)


class AssignCreate(BaseModel):
    """Who works on it (a person or a group); null takes it back to the queue."""

    model_config = ConfigDict(extra="forbid")

    assigned_to: str | None = Field(min_length=1, max_length=200)


class LinkCreate(BaseModel):
    """The problem (id or number) behind this incident or change."""

    model_config = ConfigDict(extra="forbid")

    problem: str = Field(min_length=1, max_length=40)
