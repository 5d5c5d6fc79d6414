"""API shapes of the notification outbox."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class NotificationStatus(StrEnum):
    STORED = "stored"
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class NotificationRead(BaseModel):
    """A message of the outbox as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    tenant_id: str | None
    tenant_name: str | None
    run_id: str | None
    template: str
    audience: str
    recipients: list[str]
    subject: str
    body: str
    status: NotificationStatus
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


class NotificationPage(BaseModel):
    """One page of messages, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[NotificationRead]
    next_cursor: str | None
