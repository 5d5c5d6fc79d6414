"""The notifier port: what the outbox/mailbox, SMTP, Teams and PagerDuty adapters do.

``send`` takes a rendered message and the step's idempotency key and returns
what became of it. The same key again returns the same message (and, if it
was sent, does not send it again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OutgoingMessage:
    """A rendered message for one audience."""

    to: tuple[str, ...]
    subject: str
    body: str
    template: str
    audience: str
    tenant_id: str | None = None
    tenant_name: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """The outcome of ``send``: the outbox message and where it stands."""

    message_id: str
    status: str
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class Envelope:
    """What a transport carries: one message, its stable id (the Message-ID) and recipients."""

    message_id: str
    sender: str
    to: tuple[str, ...]
    subject: str
    body: str
    audience: str | None = None
    template: str | None = None
    tenant_name: str | None = None


class Notifier(Protocol):
    def send(self, message: OutgoingMessage, *, idempotency_key: str) -> Delivery:
        """Put ``message`` in the outbox (once per key) and deliver it if a transport is set."""
        ...


class Transport(Protocol):
    """Carries one envelope; raises ``DriverError`` saying whether a retry can help."""

    def deliver(self, envelope: Envelope) -> None: ...
