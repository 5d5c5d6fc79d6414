"""API shapes of approval requests and decisions."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class DecisionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    role: str
    decision: str
    principal: str
    comment: str | None
    risk_ref: str | None
    created_at: datetime


class ApprovalRequestRead(BaseModel):
    """An approval request with the decisions taken on it so far."""

    id: str
    tenant_id: str
    kind: str
    status: str
    required_roles: list[str]
    requested_by: str
    reason: str | None
    created_at: datetime
    decided_at: datetime | None
    decisions: list[DecisionRead]
