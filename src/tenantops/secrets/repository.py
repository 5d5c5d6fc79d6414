"""Queries of the secrets inventory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import or_, select
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


def listing(
    session: Session,
    *,
    tenant_ids: Collection[str] | None,
    due_after: datetime | None,
    due_before: datetime | None,
    revoked: bool | None,
    limit: int,
) -> Sequence[SecretEntry]:
    """Entries soonest due first; ``tenant_ids`` None means every tenant, ``revoked`` None
    revoked or not."""
    query = select(SecretEntry)
    if tenant_ids is not None:
        query = query.where(SecretEntry.tenant_id.in_(tenant_ids))
    if due_after is not None:
        query = query.where(SecretEntry.next_due_at > due_after)
    if due_before is not None:
        query = query.where(SecretEntry.next_due_at <= due_before)
    if revoked is not None:
        query = query.where(
            SecretEntry.store_status == "revoked"
            if revoked
            else SecretEntry.store_status != "revoked"
        )
    order = (SecretEntry.next_due_at, SecretEntry.tenant_name, SecretEntry.path)
    return session.scalars(query.order_by(*order).limit(limit)).all()


def due_by(session: Session, moment: datetime) -> Sequence[SecretEntry]:
    """Entries not revoked due by ``moment``, locked for the check that announces them."""
    query = (
        select(SecretEntry)
        .where(SecretEntry.next_due_at <= moment, SecretEntry.store_status != "revoked")
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
