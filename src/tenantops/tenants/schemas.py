"""API shapes of tenants and of the requests that change them."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from tenantops.kit.iso4217 import CURRENCY_CODES
from tenantops.tenants.lifecycle import TenantEvent, TenantState

DNS_1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class ComplianceClass(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


UUID_SHAPED = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _dns_label(value: str) -> str:
    if not re.fullmatch(DNS_1123_LABEL, value):
        raise ValueError(
            "must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (e.g. acme-prod)"
        )
    return value


# Path segments of the web UI next to /tenants/{name}: a tenant so named could not be opened.
RESERVED_NAMES = frozenset({"new"})


def _not_an_id(value: str) -> str:
    # A tenant is addressed by id or by name in one path segment, so a name
    # shaped like an id could shadow another tenant (and its owner's scope).
    if UUID_SHAPED.match(value):
        raise ValueError("a tenant name must not look like a tenant id (a UUID)")
    if value in RESERVED_NAMES:
        raise ValueError(f"{value!r} is reserved; choose another tenant name")
    return value


def _iso4217(value: str) -> str:
    if value not in CURRENCY_CODES:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (e.g. EUR, USD, CHF)")
    return value


Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=2, examples=[2500]),
    PlainSerializer(float, return_type=float, when_used="json"),
]
Currency = Annotated[
    str,
    StringConstraints(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$"),
    AfterValidator(_iso4217),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Region = Annotated[
    str, StringConstraints(min_length=2, max_length=64, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
]
Tier = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")]


class TenantCreate(BaseModel):
    """A request for a new tenant (account manager intake)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str,
        StringConstraints(min_length=1, max_length=63),
        AfterValidator(_dns_label),
        AfterValidator(_not_an_id),
        # The pattern is checked by _dns_label with a message a person can act on.
        WithJsonSchema(
            {"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS_1123_LABEL}
        ),
    ]
    display_name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ]
    business_owner: EmailStr
    compliance_classification: ComplianceClass
    region: Region = Field(examples=["eu-central-1"])
    tier: Tier = Field(examples=["standard"])
    monthly_budget: Money
    currency: Currency = Field(examples=["EUR"])
    contacts: list[EmailStr] = Field(default_factory=list, max_length=50)
    ticket_ref: Ref | None = Field(default=None, examples=["RITM0012345"])


class TenantRead(BaseModel):
    """A tenant as the API shows it; ``version`` is also its ETag."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    display_name: str
    business_owner: str
    compliance_classification: ComplianceClass
    region: str
    tier: str
    monthly_budget: Money
    currency: str
    contacts: list[str]
    ticket_ref: str | None
    state: TenantState
    requested_by: str
    created_at: datetime
    updated_at: datetime
    approved_at: datetime | None = None
    activated_at: datetime | None = None
    version: int


class TenantPage(BaseModel):
    """One page of tenants; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[TenantRead]
    next_cursor: str | None


class ApprovalCreate(BaseModel):
    """A governance or security decision on a tenant request."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["governance", "security"]
    decision: Literal["approve", "reject"]
    comment: Text | None = None
    risk_ref: Ref | None = Field(default=None, examples=["RISK-142"])


class ReactivationDecisionCreate(BaseModel):
    """Governance's decision on a reactivation request."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: Text | None = None
    risk_ref: Ref | None = None


class SuspendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text
    incident_ref: Ref | None = Field(default=None, examples=["INC0042"])


class ReactivationRequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text


class OffboardRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text
    ticket_ref: Ref | None = None


STEP_EVENTS = (
    TenantEvent.START_PROVISIONING,
    TenantEvent.PROVISIONED,
    TenantEvent.PROVISIONING_FAILED,
    TenantEvent.VERIFIED,
    TenantEvent.VERIFICATION_FAILED,
    TenantEvent.ARCHIVE,
)


class LifecycleEventCreate(BaseModel):
    """The recorded outcome of a provisioning, verification or offboarding step."""

    model_config = ConfigDict(extra="forbid")

    event: Literal[
        "start_provisioning",
        "provisioned",
        "provisioning_failed",
        "verified",
        "verification_failed",
        "archive",
    ]
    note: Text | None = None
    evidence_ref: Ref | None = None
