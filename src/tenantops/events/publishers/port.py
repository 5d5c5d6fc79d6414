"""The publisher port: what the relay needs from a broker.

``publish`` sends events in the order given and reports how many of them,
from the first, the broker acknowledged. At-least-once: the relay sends the
rest again later, with the same event ids, so a broker that deduplicates by id
(NATS JetStream's ``Nats-Msg-Id``, Kafka's idempotent producer within a
session) and consumers that do can drop the repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tenantops.events.models import OutboxEvent


class PublishError(Exception):
    """The broker did not take every event: ``acknowledged`` from the first did go out."""

    def __init__(self, message: str, *, acknowledged: int = 0) -> None:
        super().__init__(message)
        self.acknowledged = acknowledged


class Publisher(Protocol):
    name: str

    def publish(self, events: Sequence[OutboxEvent]) -> None:
        """Send ``events`` in order; raise ``PublishError`` naming how many went out."""

    def check(self) -> str:
        """Reach the broker (for ``doctor`` and tests); a line saying what answered."""

    def close(self) -> None: ...


class NoBroker:
    """The embedded default: events stay in the outbox (``events tail``, webhooks)."""

    name = "none"

    def publish(self, events: Sequence[OutboxEvent]) -> None:
        return None

    def check(self) -> str:
        return "no broker configured: events stay in the outbox"

    def close(self) -> None:
        return None
