"""API shapes of break-glass requests."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

ElevatedRole = Literal["admin", "ops_engineer"]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=2000)]
Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
# The longest a grant may last: a shift. Longer emergencies take a new grant,
# and so a new reason, incident reference and notice to security.
LONGEST_MINUTES = 8 * 60
_DURATION = re.compile(r"([1-9]\d{0,3})([mh])")


class BreakGlassCreate(BaseModel):
    """Ask for emergency access. Granted at once; security is told at once; reviewed after."""

    model_config = ConfigDict(extra="forbid")

    reason: Text = Field(description="Why normal access is not enough (at least 10 characters)")
    incident_ref: Ref = Field(examples=["INC0042"])
    tenant: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = Field(
        default=None, description="Limit the access to one tenant (id or name)"
    )
    duration: str = Field(
        default="1h",
        max_length=8,
        description="How long the access lasts: 1m to 8h, in minutes or hours (e.g. 30m, 2h)",
    )
    roles: list[ElevatedRole] = Field(
        default_factory=lambda: list[ElevatedRole](["admin"]),
        min_length=1,
        description="Elevated roles; never governance or security, who review the use",
    )

    @field_validator("duration")
    @classmethod
    def _at_most_a_shift(cls, value: str) -> str:
        found = _DURATION.fullmatch(value)
        minutes = 0 if found is None else int(found[1]) * (60 if found[2] == "h" else 1)
        if not 1 <= minutes <= LONGEST_MINUTES:
            raise ValueError(f"must be 1m to 8h in minutes or hours (e.g. 30m, 2h), not {value!r}")
        return value


class BreakGlassRead(BaseModel):
    """The grant. ``token`` is shown only in this response."""

    run_id: str
    token: str
    token_id: str
    subject: str
    roles: list[str]
    tenant_id: str | None
    expires_at: datetime
