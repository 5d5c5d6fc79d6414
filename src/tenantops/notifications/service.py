"""The notification outbox: enqueue once per idempotency key, record delivery, read.

A message is written before anyone tries to deliver it, so a crash between
rendering and sending loses nothing; delivery then moves it to ``sent`` or,
when every attempt failed, to ``failed`` with the last error for people to see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.errors import NotFound
from tenantops.kit.clock import utcnow
from tenantops.kit.ids import new_id
from tenantops.notifications import repository
from tenantops.notifications.models import OutboxMessage
from tenantops.notifications.schemas import NotificationStatus


@dataclass(frozen=True)
class NewMessage:
    """What to put in the outbox."""

    idempotency_key: str
    tenant_id: str | None
    tenant_name: str | None
    run_id: str | None
    template: str
    audience: str
    recipients: tuple[str, ...]
    subject: str
    body: str


def enqueue(session: Session, message: NewMessage, *, deliver: bool) -> tuple[OutboxMessage, bool]:
    """The outbox row of ``message.idempotency_key``, created if new; ``(row, created)``.

    ``deliver`` false stores the message as ``stored``: with no transport the
    outbox itself is the mailbox.
    """
    existing = repository.get_by_key(session, message.idempotency_key)
    if existing is not None:
        return existing, False
    now = utcnow()
    row = OutboxMessage(
        id=new_id(),
        idempotency_key=message.idempotency_key,
        tenant_id=message.tenant_id,
        tenant_name=message.tenant_name,
        run_id=message.run_id,
        template=message.template,
        audience=message.audience,
        recipients=list(message.recipients),
        subject=message.subject,
        body=message.body,
        status=NotificationStatus.PENDING if deliver else NotificationStatus.STORED,
        attempts=0,
        last_error=None,
        created_at=now,
        updated_at=now,
        sent_at=None,
    )
    session.add(row)
    session.flush()
    return row, True


def _locked(session: Session, message_id: str) -> OutboxMessage:
    row = repository.get(session, message_id, for_update=True)
    if row is None:
        raise NotFound(f"no notification {message_id!r}")
    return row


def record_attempt(session: Session, *, message_id: str, error: str | None) -> OutboxMessage:
    """Count one delivery attempt: ``error`` None means it was sent."""
    row = _locked(session, message_id)
    now = utcnow()
    row.attempts += 1
    row.updated_at = now
    if error is None:
        row.status, row.sent_at, row.last_error = NotificationStatus.SENT, now, None
    else:
        row.last_error = error[:2000]
    return row


def mark_failed(session: Session, *, message_id: str, error: str) -> OutboxMessage:
    """Every attempt failed: the message stays visible as ``failed`` with the reason."""
    row = _locked(session, message_id)
    row.status, row.last_error, row.updated_at = NotificationStatus.FAILED, error[:2000], utcnow()
    return row


def mark_pending(session: Session, *, message_id: str) -> OutboxMessage:
    """A failed message is being tried again."""
    row = _locked(session, message_id)
    if row.status == NotificationStatus.FAILED:
        row.status, row.updated_at = NotificationStatus.PENDING, utcnow()
    return row


def message_with_key(session: Session, key: str) -> OutboxMessage | None:
    """The outbox row of idempotency key ``key``, if one was written."""
    return repository.get_by_key(session, key)


def count_messages(session: Session, *, tenant_id: str | None = None) -> int:
    """How many messages the outbox holds (of one tenant, if given)."""
    return repository.count(session, tenant_id=tenant_id)


def get_notification(session: Session, *, principal: Principal, message_id: str) -> OutboxMessage:
    """A message the principal may see."""
    row = repository.get(session, message_id)
    if row is None or (
        principal.tenant_scoped
        and (principal.tenant is None or principal.tenant not in (row.tenant_id, row.tenant_name))
    ):
        raise NotFound(f"no notification {message_id!r}")
    return row


def list_notifications(
    session: Session,
    *,
    principal: Principal,
    filters: repository.NotificationFilter,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[OutboxMessage], str | None]:
    """A page of messages the principal may see, newest first."""
    if principal.tenant_scoped:
        if principal.tenant is None:
            return [], None
        filters = repository.NotificationFilter(
            tenant=filters.tenant, status=filters.status, only=principal.tenant
        )
    after = repository.decode_cursor(cursor) if cursor else None
    return repository.list_page(session, filters, after_id=after, limit=limit)
