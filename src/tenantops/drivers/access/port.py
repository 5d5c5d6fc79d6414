"""The queue-access port: what Redis ACLs + token buckets and the local adapter do.

Pausing a tenant's queue access keeps its queues and messages; it only stops
the tenant's credentials from reading or writing them. A rate limit is a token
bucket: ``rate`` requests per second sustained, ``burst`` at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class RateLimit:
    rate: float
    burst: int


@dataclass(frozen=True)
class AccessState:
    """A tenant's queue access as the broker enforces it."""

    tenant_id: str
    tenant_name: str
    queues_paused: bool
    paused_at: datetime | None
    rate_limit: RateLimit | None

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> AccessState:
        """The state ``as_dict`` recorded (an effect log entry)."""
        limit = data["rate_limit"]
        paused_at = data["paused_at"]
        return cls(
            tenant_id=str(data["tenant_id"]),
            tenant_name=str(data["tenant_name"]),
            queues_paused=bool(data["queues_paused"]),
            paused_at=datetime.fromisoformat(paused_at) if isinstance(paused_at, str) else None,
            rate_limit=(
                RateLimit(rate=float(limit["rate"]), burst=int(limit["burst"]))
                if isinstance(limit, dict)
                else None
            ),
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "tenant_id": self.tenant_id,
            "tenant_name": self.tenant_name,
            "queues_paused": self.queues_paused,
            "paused_at": self.paused_at.isoformat() if self.paused_at else None,
            "rate_limit": (
                {"rate": self.rate_limit.rate, "burst": self.rate_limit.burst}
                if self.rate_limit
                else None
            ),
        }


class QueueAccess(Protocol):
    """Per-tenant queue ACLs and rate limits."""

    def pause_queues(
        self, *, tenant_id: str, tenant_name: str, idempotency_key: str
    ) -> AccessState:
        """Stop the tenant's access to its queues (messages are kept)."""
        ...

    def resume_queues(
        self, *, tenant_id: str, tenant_name: str, idempotency_key: str
    ) -> AccessState:
        """Give back the queue access ``pause_queues`` took."""
        ...

    def set_rate_limit(
        self, *, tenant_id: str, tenant_name: str, limit: RateLimit, idempotency_key: str
    ) -> AccessState:
        """Limit the tenant to ``limit`` (replacing any earlier limit)."""
        ...

    def lift_rate_limit(
        self, *, tenant_id: str, tenant_name: str, idempotency_key: str
    ) -> AccessState:
        """Remove the tenant's rate limit."""
        ...

    def get_state(self, *, tenant_id: str) -> AccessState | None:
        """The tenant's access, or ``None`` if nothing was ever set for it."""
        ...
