"""API shapes of self-service requests: one body per kind, told apart by ``kind``.

A request is a run of a small approval-gated runbook; what a request shows
(``status``, ``decision``) is read from that run and its gate.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from tenantops.tenants.schemas import ComplianceClass, Currency, Region, TenantCreate, Tier

Kind = Literal["tenant", "quota", "budget", "access"]
KINDS: tuple[Kind, ...] = ("tenant", "quota", "budget", "access")
CENT = Decimal("0.01")
Decision = Literal["pending", "approved", "rejected", "withdrawn"]

Justification = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=2000),
    Field(description="Why: what the approver reads before deciding"),
]
Amount = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=2, examples=[2500]),
    AfterValidator(lambda d: d.quantize(CENT)),
]


class TenantRequestCreate(BaseModel):
    """A new tenant: registered in state ``requested`` once an account manager approves."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["tenant"]
    # The same name rules as the registry (DNS-1123 label, not shaped like an id).
    name: Annotated[str, Field(min_length=1, max_length=63)]
    display_name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    tier: Tier = Field(examples=["standard"])
    region: Region = Field(examples=["eu-central-1"])
    compliance_classification: ComplianceClass
    monthly_budget: Amount = Decimal(0)
    currency: Currency | None = Field(default=None, description="Default: the current tenant's")
    justification: Justification

    def check_name(self) -> None:
        """The registry's own name rules, so a refusal comes now and not after approval."""
        TenantCreate.model_validate(
            {
                "name": self.name,
                "display_name": self.name,
                "business_owner": "owner@example.com",
                "compliance_classification": self.compliance_classification,
                "region": self.region,
                "tier": self.tier,
                "monthly_budget": self.monthly_budget,
                "currency": self.currency or "EUR",
            }
        )


class QuotaRequestCreate(BaseModel):
    """Another tier (its quota and limits follow); governance approves."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["quota"]
    tier: Tier = Field(examples=["premium"])
    justification: Justification


class BudgetRequestCreate(BaseModel):
    """Another monthly budget; finance approves."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["budget"]
    amount: Amount
    currency: Currency | None = Field(default=None, description="Default: the budget's currency")
    justification: Justification


class AccessRequestCreate(BaseModel):
    """A team member in the tenant's group with read or write access; security approves."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["access"]
    subject: EmailStr = Field(description="The team member's e-mail (their identity)")
    permission: Literal["read", "write"] = "read"
    justification: Justification


RequestCreate = Annotated[
    TenantRequestCreate | QuotaRequestCreate | BudgetRequestCreate | AccessRequestCreate,
    Field(discriminator="kind"),
]


class RequestRead(BaseModel):
    """A request as its run stands: ``status`` is the run's, ``decision`` its gate's."""

    id: str = Field(description="The request's run id (GET /api/v1/runs/{id})")
    kind: Kind
    runbook_id: str
    tenant_id: str
    tenant_name: str
    requested_by: str
    created_at: datetime
    finished_at: datetime | None
    status: str = Field(description="The run's state: waiting, running, succeeded, failed, …")
    decision: Decision
    approver_roles: list[str]
    decided_by: str | None
    decision_comment: str | None
    error: str | None
    fields: dict[str, Any] = Field(description="What was asked for, as submitted")
    justification: str


class RequestPage(BaseModel):
    """A tenant's requests, newest first."""

    items: list[RequestRead]
