"""Queries of on-call: configuration versions, pages, their timelines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tenantops.oncall.models import OncallConfig, Page, PageEvent


def latest_config(session: Session) -> OncallConfig | None:
    return session.scalars(
        select(OncallConfig).order_by(OncallConfig.version.desc()).limit(1)
    ).first()


def config_version(session: Session, version: int) -> OncallConfig | None:
    return session.get(OncallConfig, version)


def next_config_version(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(OncallConfig.version), 0))) or 0) + 1


def by_key(session: Session, key: str, *, for_update: bool = False) -> Page | None:
    query = select(Page).where(Page.key == key)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def by_id(session: Session, page_id: str, *, for_update: bool = False) -> Page | None:
    return session.get(Page, page_id, with_for_update=for_update)


def listing(
    session: Session,
    *,
    status: str | None,
    open_only: bool,
    tenant_id: str | None,
    before_id: str | None,
    limit: int,
) -> Sequence[Page]:
    """Pages newest first (ids are time-ordered), ``limit + 1`` for the paging cursor."""
    query = select(Page)
    if status is not None:
        query = query.where(Page.status == status)
    if open_only:
        query = query.where(Page.status != "resolved")
    if tenant_id is not None:
        query = query.where(Page.tenant_id == tenant_id)
    if before_id is not None:
        query = query.where(Page.id < before_id)
    return session.scalars(query.order_by(Page.id.desc()).limit(limit + 1)).all()


def timeline(session: Session, page_id: str) -> Sequence[PageEvent]:
    query = select(PageEvent).where(PageEvent.page_id == page_id).order_by(PageEvent.id)
    return session.scalars(query).all()


def due(session: Session, now: datetime, limit: int) -> Sequence[Page]:
    """Open pages whose next escalation is due, locked; rows another sweep holds are skipped
    (PostgreSQL ``SKIP LOCKED``; SQLite's one writer needs no lock)."""
    query = (
        select(Page)
        .where(Page.status == "triggered", Page.next_at.is_not(None), Page.next_at <= now)
        .order_by(Page.next_at, Page.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(query).all()


def take(session: Session, page: Page, *, version: int, next_at: datetime, now: datetime) -> bool:
    """Move ``page`` from ``version`` to the next, pushing ``next_at`` out: True if this
    caller won it (a conditional UPDATE, so two sweeps never both take one step)."""
    result = session.execute(
        update(Page)
        .where(Page.id == page.id, Page.version == version, Page.status == "triggered")
        .values(version=version + 1, next_at=next_at, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def defer(session: Session, page: Page, *, version: int, next_at: datetime) -> bool:
    """Move a due ``page``'s ``next_at`` out without taking its step (its ``version``
    stays, so the sweep that holds the step records it as usual)."""
    result = session.execute(
        update(Page)
        .where(Page.id == page.id, Page.version == version, Page.status == "triggered")
        .values(next_at=next_at)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def open_keys(session: Session, prefix: str, limit: int) -> Sequence[str]:
    """Keys of the pages not resolved yet whose key starts with ``prefix`` (a literal)."""
    query = (
        select(Page.key)
        .where(Page.status != "resolved", Page.key.startswith(prefix, autoescape=True))
        .order_by(Page.id)
        .limit(limit)
    )
    return session.scalars(query).all()
