"""Queries over tenants and remembered idempotent requests."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

# The services read a page's cursor through the repository that pages.
from tenantops.kit.cursor import decode_cursor as decode_cursor
from tenantops.kit.cursor import page
from tenantops.tenants.models import IdempotencyRecord, Tenant


def get(session: Session, ref: str, *, for_update: bool = False) -> Tenant | None:
    """A tenant by id or by name; ``for_update`` locks the row until commit."""
    query = select(Tenant).where(or_(Tenant.id == ref, Tenant.name == ref))
    if for_update:
        query = query.with_for_update()
    return session.execute(query).scalars().first()


def get_by_name(session: Session, name: str) -> Tenant | None:
    return session.execute(select(Tenant).where(Tenant.name == name)).scalars().first()


@dataclass(frozen=True)
class TenantFilter:
    """Filters of ``GET /tenants``; ``only`` restricts to one tenant (owner scope)."""

    state: str | None = None
    region: str | None = None
    tier: str | None = None
    owner: str | None = None
    q: str | None = None
    only: str | None = None


def names_of(session: Session, tenant_ids: Collection[str]) -> dict[str, str]:
    """Tenant names by id, for the ids that exist (one query)."""
    if not tenant_ids:
        return {}
    query = select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenant_ids))
    return {row.id: row.name for row in session.execute(query)}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conditions(filters: TenantFilter) -> list[ColumnElement[bool]]:
    """The ``WHERE`` of ``filters``: one set for the page and for its count."""
    where: list[ColumnElement[bool]] = []
    if filters.state:
        where.append(Tenant.state == filters.state)
    if filters.region:
        where.append(Tenant.region == filters.region)
    if filters.tier:
        where.append(Tenant.tier == filters.tier)
    if filters.owner:
        where.append(Tenant.business_owner == filters.owner.lower())
    if filters.only is not None:
        where.append(or_(Tenant.id == filters.only, Tenant.name == filters.only))
    if filters.q:
        pattern = f"%{_escape_like(filters.q.lower())}%"
        where.append(
            or_(
                Tenant.name.like(pattern, escape="\\"),
                Tenant.display_name.ilike(pattern, escape="\\"),
                Tenant.business_owner.like(pattern, escape="\\"),
            )
        )
    return where


def list_page(
    session: Session, filters: TenantFilter, *, after_id: str | None, limit: int
) -> tuple[Sequence[Tenant], str | None]:
    """Newest first, keyset-paged on the time-ordered id; returns (rows, next cursor)."""
    query = select(Tenant).where(*_conditions(filters)).order_by(Tenant.id.desc()).limit(limit + 1)
    if after_id is not None:
        query = query.where(Tenant.id < after_id)
    return page(session.execute(query).scalars().all(), limit)


def count(session: Session, filters: TenantFilter, *, from_id: str | None = None) -> int:
    """How many tenants match ``filters`` (with ``from_id``: those with an id at or above it)."""
    where = _conditions(filters)
    if from_id is not None:
        where.append(Tenant.id >= from_id)
    query = select(func.count()).select_from(Tenant).where(*where)
    return int(session.execute(query).scalar_one())


def in_states(
    session: Session,
    filters: TenantFilter,
    *,
    states: Collection[str],
    activated_before: datetime,
) -> Sequence[Tenant]:
    """The tenants of ``filters`` in ``states``, first active before ``activated_before``,
    in id order."""
    query = (
        select(Tenant)
        .where(
            *_conditions(filters),
            Tenant.state.in_(states),
            Tenant.activated_at < activated_before,
        )
        .order_by(Tenant.id)
    )
    return session.execute(query).scalars().all()


def get_idempotency(session: Session, principal: str, key: str) -> IdempotencyRecord | None:
    return session.get(IdempotencyRecord, (principal, key))
