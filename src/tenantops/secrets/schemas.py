"""API schemas of the secrets inventory: metadata only, no field could hold a value."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tenantops.secrets.service import MAX_CYCLE_DAYS, RotationStatus

SecretPath = Field(
    min_length=1,
    max_length=300,
    description="The secret's path, relative to the tenant's prefix in its store",
    examples=["app/database"],
)


class SecretRead(BaseModel):
    """A tenant's secret as the inventory knows it, and where its rotation stands."""

    tenant_id: str
    tenant_name: str
    path: str
    owner: str | None
    purpose: str | None
    rotation_days: int
    registered_by: str | None = Field(description="Who registered owner, purpose and cycle.")
    store_status: str = Field(description="active, revoked, or absent (not in the store)")
    version: int | None = Field(description="The store's generation of the secret.")
    last_rotated_at: datetime
    next_due_at: datetime
    status: RotationStatus
    attested_at: datetime | None = Field(description="The last rotation someone recorded.")
    attested_by: str | None
    evidence: str | None
    refreshed_at: datetime | None = Field(description="When the store was last read.")


class SecretList(BaseModel):
    """Secrets soonest due first."""

    items: list[SecretRead]


class SecretRegister(BaseModel):
    """Owner, purpose and rotation cycle of a secret; they win over the store's metadata."""

    model_config = ConfigDict(extra="forbid")

    path: str = SecretPath
    owner: str | None = Field(
        default=None,
        max_length=200,
        description="Who rotates it: an e-mail address or a channel (slack:…) gets the notices",
        examples=["team-db@acme.example"],
    )
    purpose: str | None = Field(default=None, max_length=300)
    rotation_days: int = Field(ge=1, le=MAX_CYCLE_DAYS, examples=[90])


class RotationCreate(BaseModel):
    """A rotation that happened: who did it is the caller; the evidence says where to look."""

    model_config = ConfigDict(extra="forbid")

    path: str = SecretPath
    evidence: str = Field(
        min_length=3,
        max_length=500,
        description="A reference, never the value: change ticket, CI job, runbook run",
        examples=["CHG0012345"],
    )
    rotated_at: AwareDatetime | None = Field(
        default=None, description="When it was rotated; default now; never in the future"
    )
