"""API shapes of the finops domain. Amounts are decimal strings ("123.45"), never floats."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

Amount = Annotated[Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]


class ImportRead(BaseModel):
    """The summary of one cost import."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    sha256: str
    filename: str
    format: str
    billing_account_id: str
    billing_period_start: datetime
    billing_period_end: datetime
    currency: str
    rows: int
    allocated_rows: int
    unallocated_rows: int
    billed_cost: Amount
    effective_cost: Amount
    unallocated_cost: Amount
    summary: dict[str, Any]
    imported_by: str
    imported_at: datetime
    superseded_by: str | None
    duplicate: bool = Field(
        default=False, description="True when this file had been imported before (no new rows)"
    )


class ImportPage(BaseModel):
    items: list[ImportRead]
    next_cursor: str | None


class ServiceCost(BaseModel):
    service: str
    cost: Amount


class DayCost(BaseModel):
    day: date
    currency: str
    cost: Amount


class TenantCost(BaseModel):
    """A tenant's month: cost, forecast, budget, ratio and the thresholds crossed."""

    tenant_id: str
    tenant_name: str
    month: str
    currency: str
    cost: Amount
    forecast: Amount
    budget: Amount
    ratio: Amount | None = Field(description="cost / budget (1 = the whole budget)")
    forecast_ratio: Amount | None
    thresholds: list[int]
    crossed: list[int] = Field(description="Thresholds (percent) the month-to-date cost reached")
    top_services: list[ServiceCost]
    other_currencies: dict[str, Amount]
    days: list[DayCost] = Field(default_factory=list)


class CostRow(BaseModel):
    tenant_id: str
    tenant_name: str
    currency: str
    cost: Amount
    forecast: Amount
    budget: Amount
    ratio: Amount | None
    crossed: int | None = Field(description="The highest threshold reached, if any")
    other_currencies: dict[str, Amount]


class CostOverview(BaseModel):
    """All tenants' cost of a month (paged by tenant), with the totals of the whole month."""

    month: str
    items: list[CostRow]
    next_cursor: str | None
    total: dict[str, Amount] = Field(description="All cost of the month per currency")
    unallocated: dict[str, Amount] = Field(description="Cost no allocation rule matched")


class LedgerEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    tenant_id: str | None
    kind: str
    at: datetime
    charge_day: date | None
    service_name: str | None
    resource_id: str | None
    billed_cost: Amount | None
    effective_cost: Amount | None
    amount: Amount | None
    currency: str | None
    import_id: str | None
    source_line: int | None
    actor: str
    ref: str | None
    data: dict[str, Any] | None


class LedgerPage(BaseModel):
    items: list[LedgerEntryRead]
    next_cursor: str | None = Field(description="Pass as ?before= for older entries")


class BudgetWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(ge=0, max_digits=14, decimal_places=2, examples=["2500.00"])
    currency: Currency | None = Field(
        default=None, description="ISO 4217; default: the tenant's currency"
    )
    thresholds: list[int] | None = Field(
        default=None, min_length=1, max_length=20, examples=[[50, 80, 100, 120]]
    )


class BudgetRead(BaseModel):
    tenant_id: str
    tenant_name: str
    amount: Amount
    currency: str
    thresholds: list[int]
    version: int = Field(description="0: the registry's monthly_budget, never set here")
    updated_by: str | None
    updated_at: datetime | None
