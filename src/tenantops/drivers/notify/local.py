"""The outbox notifier: every message lands in the outbox; a transport, if any, delivers it.

With no transport (the embedded default) the outbox is the mailbox: messages
are ``stored`` and read through ``GET /api/v1/notifications``. With a
transport (SMTP), a message is tried ``attempts`` times with exponential
backoff; each attempt is counted on the message, and when all fail it stays
visible as ``failed`` with the last error and the step is failed retriable, so
the engine's own retry tries again later. Sending is at-least-once: a crash
after the server accepted and before ``sent`` was recorded sends it again
(with the same Message-ID).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from tenantops.db import Database
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.notify.port import Delivery, Envelope, OutgoingMessage, Transport
from tenantops.kit.clock import as_utc
from tenantops.notifications import service
from tenantops.notifications.models import OutboxMessage
from tenantops.notifications.schemas import NotificationStatus

DONE = (NotificationStatus.SENT, NotificationStatus.STORED)
# The longest a channel's Retry-After may hold a worker between two attempts;
# beyond it, the step fails retriable and the engine's backoff takes over.
MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class Queued:
    """The status and creation time of the outbox message of one idempotency key."""

    status: str
    created_at: datetime

    @property
    def pending(self) -> bool:
        """True while the message is still to be delivered (a sender may be at it now)."""
        return self.status == NotificationStatus.PENDING


def longest_delivery(
    *, attempts: int, backoff_seconds: float, attempt_seconds: float, retry_after: bool
) -> float:
    """Seconds one ``send`` may take at worst: ``attempts`` tries of at most
    ``attempt_seconds`` each, and the backoffs between them (each up to
    ``MAX_RETRY_AFTER`` when a channel may ask for a Retry-After)."""
    gaps = [backoff_seconds * float(2 ** (k - 1)) for k in range(1, attempts)]
    if retry_after:
        gaps = [max(gap, MAX_RETRY_AFTER) for gap in gaps]
    return float(attempts * attempt_seconds + sum(gaps))


def _delivery(row: OutboxMessage) -> Delivery:
    return Delivery(
        message_id=row.id, status=row.status, attempts=row.attempts, error=row.last_error
    )


class OutboxNotifier:
    """``Notifier`` over the outbox, with an optional transport."""

    def __init__(
        self,
        db: Database,
        transport: Transport | None = None,
        *,
        sender: str = "tenantops@localhost",
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db = db
        self.transport = transport
        self.sender = sender
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep

    def _enqueue(self, message: OutgoingMessage, key: str) -> OutboxMessage:
        new = service.NewMessage(
            idempotency_key=key,
            tenant_id=message.tenant_id,
            tenant_name=message.tenant_name,
            run_id=message.run_id,
            template=message.template,
            audience=message.audience,
            recipients=message.to,
            subject=message.subject,
            body=message.body,
        )
        for _ in range(3):
            try:
                with self.db.write() as session:
                    row, _created = service.enqueue(
                        session, new, deliver=self.transport is not None
                    )
                    if row.status == NotificationStatus.FAILED:
                        row = service.mark_pending(session, message_id=row.id)
                    return row
            except IntegrityError:
                continue  # a concurrent run of the same key wrote it first
        raise DriverError("outbox write kept conflicting", retry=Retry.RETRIABLE)

    def send(self, message: OutgoingMessage, *, idempotency_key: str) -> Delivery:
        if not message.to:
            raise DriverError("a message needs at least one recipient", retry=Retry.PERMANENT)
        row = self._enqueue(message, idempotency_key)
        if row.status in DONE or self.transport is None:
            return _delivery(row)
        return self._deliver(row)

    def _deliver(self, row: OutboxMessage) -> Delivery:
        assert self.transport is not None
        envelope = Envelope(
            message_id=row.id,
            sender=self.sender,
            to=tuple(row.recipients),
            subject=row.subject,
            body=row.body,
            audience=row.audience,
            template=row.template,
            tenant_name=row.tenant_name,
        )
        error: DriverError | None = None
        for attempt in range(self.attempts):
            if attempt:
                delay = self.backoff_seconds * 2 ** (attempt - 1)
                asked = getattr(error, "retry_after", None)  # a channel's Retry-After
                if isinstance(asked, int | float):
                    delay = max(delay, min(float(asked), MAX_RETRY_AFTER))
                self.sleep(delay)
            try:
                self.transport.deliver(envelope)
            except DriverError as exc:
                error = exc
                with self.db.write() as session:
                    service.record_attempt(session, message_id=row.id, error=str(exc))
                if not exc.retriable:
                    break
                continue
            with self.db.write() as session:
                return _delivery(service.record_attempt(session, message_id=row.id, error=None))
        assert error is not None
        with self.db.write() as session:
            failed = service.mark_failed(session, message_id=row.id, error=str(error))
        raise DriverError(
            f"message {failed.id} not delivered after {failed.attempts} attempts: {error}",
            retry=Retry.RETRIABLE if error.retriable else error.retry,
        )

    def queued(self, idempotency_key: str) -> Queued | None:
        """The status and creation time of the message with ``idempotency_key``, if any.

        ``send`` delivers a ``pending`` message again: a caller that must not
        deliver a message another sender is still delivering looks here first.
        """
        with self.db.read() as session:
            row = service.message_with_key(session, idempotency_key)
            return None if row is None else Queued(row.status, as_utc(row.created_at))

    def effect_count(self, *, tenant_id: str | None = None) -> int:
        """How many messages the outbox holds (one per idempotency key)."""
        with self.db.read() as session:
            return service.count_messages(session, tenant_id=tenant_id)
