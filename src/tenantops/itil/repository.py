"""Every query of the ITIL records: numbering, look-ups, listings and timelines."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenantops.itil.models import ItilNote, ItilRecord
from tenantops.kit.cursor import page


def next_seq(session: Session, kind: str) -> int:
    """One more than the highest number of ``kind`` (the caller holds the kind's lock)."""
    top = session.scalar(select(func.max(ItilRecord.seq)).where(ItilRecord.kind == kind))
    return int(top or 0) + 1


def get(session: Session, record_id: str, *, for_update: bool = False) -> ItilRecord | None:
    query = select(ItilRecord).where(ItilRecord.id == record_id)
    if for_update:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def by_number(session: Session, number: str, *, for_update: bool = False) -> ItilRecord | None:
    query = select(ItilRecord).where(ItilRecord.number == number)
    if for_update:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def by_correlation(session: Session, correlation_id: str) -> ItilRecord | None:
    query = select(ItilRecord).where(ItilRecord.correlation_id == correlation_id)
    return session.execute(query).scalar_one_or_none()


def by_external(session: Session, system: str, external_id: str) -> ItilRecord | None:
    query = select(ItilRecord).where(
        ItilRecord.external_system == system, ItilRecord.external_id == external_id
    )
    return session.execute(query.limit(1)).scalar_one_or_none()


def note_by_key(session: Session, key: str) -> ItilNote | None:
    return session.execute(select(ItilNote).where(ItilNote.key == key)).scalar_one_or_none()


def timeline(session: Session, record_id: str) -> Sequence[ItilNote]:
    """A record's notes, oldest first."""
    query = select(ItilNote).where(ItilNote.record_id == record_id).order_by(ItilNote.id)
    return session.execute(query).scalars().all()


@dataclass(frozen=True)
class RecordFilter:
    """What a listing keeps; ``tenant_ids`` None is every tenant and the platform."""

    kind: str | None = None
    state: str | None = None
    tenant_ids: Collection[str] | None = None
    open_only: bool = False
    done_states: Collection[str] = ()


def list_page(
    session: Session, filters: RecordFilter, *, after_id: str | None, limit: int, offset: int = 0
) -> tuple[Sequence[ItilRecord], str | None]:
    """Newest first, keyset-paged on the time-ordered id; returns (rows, next cursor)."""
    query = select(ItilRecord).order_by(ItilRecord.id.desc()).limit(limit + 1)
    if filters.kind:
        query = query.where(ItilRecord.kind == filters.kind)
    if filters.state:
        query = query.where(ItilRecord.state == filters.state)
    if filters.tenant_ids is not None:
        query = query.where(ItilRecord.tenant_id.in_(list(filters.tenant_ids)))
    if filters.open_only:
        query = query.where(ItilRecord.state.not_in(list(filters.done_states)))
    if after_id is not None:
        query = query.where(ItilRecord.id < after_id)
    if offset:
        query = query.offset(offset)
    return page(session.execute(query).scalars().all(), limit)
