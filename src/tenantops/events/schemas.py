"""API shapes of events, webhook subscriptions and deliveries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from tenantops.events.catalogue import CATALOGUE


class EventPage(BaseModel):
    """CloudEvents from the outbox, oldest first; pass ``next_after`` as ``after`` to go on."""

    items: list[dict[str, Any]]
    next_after: int = Field(description="The last sequence number returned (or the one given).")
    pruned_through: int = Field(
        0,
        description=(
            "Retention has deleted events up to this sequence number (0: none). If your "
            "`after` is below it, events you never read may be gone: resynchronise."
        ),
    )


def known_types(types: list[str]) -> list[str]:
    """``types`` sorted and deduplicated; ``ValueError`` naming one that matches no event type.

    A filter that matches nothing is a typo, never a wish to wait forever (a
    subscription that is never called, a ``tail`` that never prints).
    """
    for t in types:
        known = t == "*" or t in CATALOGUE
        if t.endswith("*") and len(t) > 1:
            known = any(name.startswith(t[:-1]) for name in CATALOGUE)
        if not known:
            raise ValueError(f"{t!r} matches no event type; see /asyncapi.json for the catalogue")
    return sorted(set(types))


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl = Field(description="Where events are POSTed (http or https).")
    types: list[str] = Field(
        min_length=1,
        max_length=50,
        description="Event types: exact (io.tenantops.tenant.suspended), a prefix with * "
        "(io.tenantops.tenant.*), or * for all.",
    )
    description: str | None = Field(None, max_length=200)

    @field_validator("types")
    @classmethod
    def _known(cls, types: list[str]) -> list[str]:
        return known_types(types)


class SubscriptionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    types: list[str]
    description: str | None
    created_by: str
    created_at: datetime


class SubscriptionCreated(SubscriptionRead):
    secret: str = Field(
        description="The signing secret (Standard Webhooks, whsec_…). Shown only now."
    )


class SubscriptionPage(BaseModel):
    items: list[SubscriptionRead]


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    CANCELLED = "cancelled"


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    subscription_id: str
    event_seq: int
    event_id: str
    event_type: str
    tenant_id: str | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryRead]
    next_cursor: str | None
