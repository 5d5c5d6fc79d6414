"""API shapes of break-glass requests."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ElevatedRole = Literal["admin", "ops_engineer"]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=2000)]
Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class BreakGlassCreate(BaseModel):
    """Ask for emergency access. Granted at once; security is told at once; reviewed after."""

    model_config = ConfigDict(extra="forbid")

    reason: Text = Field(description="Why normal access is not enough (at least 10 characters)")
    incident_ref: Ref = Field(examples=["INC0042"])
    tenant: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = Field(
        default=None, description="Limit the access to one tenant (id or name)"
    )
    duration: Annotated[str, Field(pattern=r"^([1-9]\d{0,2}m|[1-8]h)$")] = Field(
        default="1h", description="How long the access lasts: 1m to 8h (e.g. 30m, 2h)"
    )
    roles: list[ElevatedRole] = Field(
        default_factory=lambda: list[ElevatedRole](["admin"]),
        min_length=1,
        description="Elevated roles; never governance or security, who review the use",
    )


class BreakGlassRead(BaseModel):
    """The grant. ``token`` is shown only in this response."""

    run_id: str
    token: str
    token_id: str
    subject: str
    roles: list[str]
    tenant_id: str | None
    expires_at: datetime
