"""API schemas of on-call: pages, their timelines, the configuration and who is on call."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tenantops.oncall.document import Severity


class PageRead(BaseModel):
    """A page: what it is about, where its escalation stands, who answered.

    ``level`` is 1-based (the level told last; null before the first notification,
    which goes out on the escalator's next sweep). ``exhausted``: every level was
    told ``repeat + 1`` times and nobody acknowledged; the page stays open.
    """

    id: str
    key: str
    tenant_id: str | None
    tenant_name: str | None = None
    record_id: str | None
    summary: str
    severity: str
    policy: str
    config_version: int | None = Field(description="The on-call document in force; null: default")
    level: int | None
    levels: int = Field(description="How many levels the policy has")
    round: int = Field(description="0 the first time through the levels, 1 the first repeat…")
    status: str = Field(description="triggered, acknowledged or resolved")
    exhausted: bool
    next_at: datetime | None = Field(description="When it escalates next unless acknowledged")
    triggered_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    updated_at: datetime
    version: int


class PageEventRead(BaseModel):
    """One entry of a page's timeline; ``level`` 1-based."""

    at: datetime
    event: str
    level: int | None
    targets: list[str]
    actor: str
    detail: str | None


class PageDetail(PageRead):
    """A page with its timeline, oldest first."""

    timeline: list[PageEventRead]


class PageList(BaseModel):
    """Pages, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[PageRead]
    next_cursor: str | None


class PageCreate(BaseModel):
    """A page someone raises by hand; ``key`` defaults to a new one (``manual:<id>``), and a
    key given is kept under ``manual:`` too (``x`` is ``manual:x``): the keys the platform
    pages under (``itil:``, ``sla:``, ``run:``) cannot be taken by hand."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=3, max_length=500)
    severity: Severity = "high"
    tenant: str | None = Field(default=None, description="Tenant id or name")
    key: str | None = Field(
        default=None,
        min_length=3,
        max_length=193,
        description="Idempotency: a second page with this key returns the first; "
        "stored as manual:<key> (a key already starting manual: is kept as is)",
    )


class ShiftRead(BaseModel):
    """Who covers a rotation, from when until when (UTC)."""

    rotation: str
    member: str
    since: datetime
    until: datetime
    override: bool


class OnCallNow(BaseModel):
    """Who is on call at ``at``, rotation by rotation."""

    at: datetime
    config_version: int | None
    shifts: list[ShiftRead]


class ConfigRead(BaseModel):
    """The on-call document in force; ``version`` null means the built-in default."""

    version: int | None
    digest: str
    applied_by: str | None
    applied_at: datetime | None
    document: dict[str, Any]


class ConfigApplied(ConfigRead):
    """The result of applying a document: ``changed`` false when it was already in force."""

    changed: bool
    warnings: list[str] = Field(
        default_factory=list,
        description="What the document names that this server cannot reach (an unconfigured"
        " channel): applied, but pages to it stay in the notification outbox",
    )


class OncallOverview(BaseModel):
    """The configuration in force and who is on call now."""

    config: ConfigRead
    now: OnCallNow
