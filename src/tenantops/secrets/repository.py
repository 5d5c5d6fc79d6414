"""Queries of the secrets inventory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from tenantops.secrets.models import SecretEntry


def get(
    session: Session, tenant_id: str, path: str, *, for_update: bool = False
) -> SecretEntry | None:
    return session.get(SecretEntry, (tenant_id, path), with_for_update=for_update)


def of_tenant(session: Session, tenant_id: str) -> dict[str, SecretEntry]:
    """Every entry of a tenant by path, locked: a refresh rewrites them."""
    rows = session.scalars(
        select(SecretEntry).where(SecretEntry.tenant_id == tenant_id).with_for_update()
    )
    return {row.path: row for row in rows}


@dataclass(frozen=True)
class Window:
    """Which entries a listing keeps: revoked or not (None: both), and bounds on
    ``next_due_at`` (``due_*``) and ``due_soon_at`` (``soon_*``); None: unbounded."""

    revoked: bool | None = None
    due_after: datetime | None = None
    due_by: datetime | None = None
    soon_after: datetime | None = None
    soon_by: datetime | None = None


def listing(
    session: Session, *, tenant_ids: Collection[str] | None, window: Window, limit: int
) -> Sequence[SecretEntry]:
    """Entries in ``window``, soonest due first; ``tenant_ids`` None means every tenant."""
    query = select(SecretEntry)
    if tenant_ids is not None:
        query = query.where(SecretEntry.tenant_id.in_(tenant_ids))
    if window.due_after is not None:
        query = query.where(SecretEntry.next_due_at > window.due_after)
    if window.due_by is not None:
        query = query.where(SecretEntry.next_due_at <= window.due_by)
    if window.soon_after is not None:
        query = query.where(SecretEntry.due_soon_at > window.soon_after)
    if window.soon_by is not None:
        query = query.where(SecretEntry.due_soon_at <= window.soon_by)
    if window.revoked is not None:
        query = query.where(
            SecretEntry.store_status == "revoked"
            if window.revoked
            else SecretEntry.store_status != "revoked"
        )
    order = (SecretEntry.next_due_at, SecretEntry.tenant_name, SecretEntry.path)
    return session.scalars(query.order_by(*order).limit(limit)).all()


def due_by(session: Session, moment: datetime) -> Sequence[SecretEntry]:
    """Live entries due by ``moment``, locked for the check that announces them.

    Live: in the store and not revoked, or ``absent`` because an operator registered
    it ahead of the store (``registered_by`` set, never seen there: ``refreshed_at``
    NULL). One that left the store is not.
    """
    ahead_of_the_store = and_(
        SecretEntry.registered_by.is_not(None), SecretEntry.refreshed_at.is_(None)
    )
    query = (
        select(SecretEntry)
        .where(
            SecretEntry.next_due_at <= moment,
            SecretEntry.store_status != "revoked",
            or_(SecretEntry.store_status != "absent", ahead_of_the_store),
        )
        .order_by(SecretEntry.tenant_id, SecretEntry.path)
        .with_for_update()
    )
    return session.scalars(query).all()


def unnotified(session: Session, limit: int) -> Sequence[SecretEntry]:
    """Entries announced due whose owner has not been told of that announcement yet."""
    query = (
        select(SecretEntry)
        .where(
            SecretEntry.announced.is_not(None),
            or_(SecretEntry.notified.is_(None), SecretEntry.notified != SecretEntry.announced),
        )
        .order_by(SecretEntry.tenant_id, SecretEntry.path)
        .limit(limit)
    )
    return session.scalars(query).all()
