"""Queries of the notification outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from tenantops.kit.cursor import decode_cursor as decode_cursor
from tenantops.kit.cursor import page
from tenantops.notifications.models import OutboxMessage


@dataclass(frozen=True)
class NotificationFilter:
    tenant: str | None = None
    status: str | None = None
    only: str | None = None  # a tenant-scoped caller's tenant (id or name)


def get(session: Session, message_id: str, *, for_update: bool = False) -> OutboxMessage | None:
    return session.get(OutboxMessage, message_id, with_for_update=for_update)


def get_by_key(session: Session, key: str) -> OutboxMessage | None:
    return session.execute(
        select(OutboxMessage).where(OutboxMessage.idempotency_key == key)
    ).scalar_one_or_none()


def count(session: Session, *, tenant_id: str | None) -> int:
    query = select(func.count()).select_from(OutboxMessage)
    if tenant_id is not None:
        query = query.where(OutboxMessage.tenant_id == tenant_id)
    return int(session.execute(query).scalar_one())


def list_page(
    session: Session, filters: NotificationFilter, *, after_id: str | None, limit: int
) -> tuple[Sequence[OutboxMessage], str | None]:
    """Newest first, keyset-paged on the time-ordered id; returns (rows, next cursor)."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit + 1)
    if filters.tenant is not None:
        query = query.where(
            or_(
                OutboxMessage.tenant_id == filters.tenant,
                OutboxMessage.tenant_name == filters.tenant,
            )
        )
    if filters.only is not None:
        query = query.where(
            or_(OutboxMessage.tenant_id == filters.only, OutboxMessage.tenant_name == filters.only)
        )
    if filters.status is not None:
        query = query.where(OutboxMessage.status == filters.status)
    if after_id is not None:
        query = query.where(OutboxMessage.id < after_id)
    return page(session.execute(query).scalars().all(), limit)
