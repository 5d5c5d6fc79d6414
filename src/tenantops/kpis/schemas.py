"""What the KPI report carries: the filter, a row per tenant, the overall numbers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

SORT_KEYS = (
    "name",
    "state",
    "region",
    "tier",
    "activation_seconds",
    "sla",
    "incidents",
    "open_incidents",
    "runs_in_progress",
    "runs_stalled",
    "cost_mtd",
    "budget_ratio",
)
SlaOutcome = Literal["met", "missed", "pending"]


class KpiFilter(BaseModel):
    state: str | None = None
    region: str | None = None
    tier: str | None = None
    sort: str = "name"
    limit: int | None = None  # rows of the table; the overall numbers count every tenant


class TenantKpis(BaseModel):
    """One row of the dashboard table."""

    id: str
    name: str
    display_name: str
    state: str
    region: str
    tier: str
    activation_seconds: float | None
    provisioning_seconds: float | None
    sla: SlaOutcome | None
    incidents: int = Field(description="The tenant's ITIL incident records, in any state")
    open_incidents: int = Field(description="Of those, the ones not resolved, closed or cancelled")
    suspensions: int
    sla_breaches: int
    security_events: int
    runs_in_progress: int
    runs_stalled: int
    currency: str
    cost_mtd: Decimal | None
    budget: Decimal
    budget_ratio: Decimal | None


class OverallKpis(BaseModel):
    tenants: int
    by_state: dict[str, int]
    activated: int
    activation_median_seconds: float | None
    activation_p90_seconds: float | None
    sla_met: int
    sla_missed: int
    sla_pending: int
    sla_attainment: float | None
    incidents: int = Field(
        description="The tenants' ITIL incident records, and the platform's when the view is "
        "the whole fleet (no filter, not a tenant owner)"
    )
    open_incidents: int = Field(description="Of those, not resolved, closed or cancelled")
    platform_incidents: int | None = Field(
        description="Incident records of no tenant, counted in incidents; null: not in this view"
    )
    platform_open_incidents: int | None = Field(
        description="Of those, not resolved, closed or cancelled; null: not in this view"
    )
    suspensions: int
    sla_breaches: int
    security_events: int
    runs_in_progress: int
    runs_stalled: int
    cost_mtd: dict[str, Decimal] = Field(
        description="Month to date per currency, of every tenant in view (an archived "
        "tenant's last days included); empty for staff who may not read cost"
    )
    budget: dict[str, Decimal] = Field(
        description="Per currency, the budgets of the tenants that hold one: approved to "
        "offboarding, suspended included; not requested, rejected or archived tenants"
    )


class KpiReport(BaseModel):
    generated_at: datetime
    month: str
    filters: KpiFilter
    overall: OverallKpis
    tenants: list[TenantKpis]
    truncated: bool = False
