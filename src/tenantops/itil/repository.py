"""Every query of the ITIL records: numbering, look-ups, listings and timelines."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.orm import Session

from tenantops.itil import states
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


def by_external(
    session: Session, system: str, external_id: str, *, for_update: bool = False
) -> ItilRecord | None:
    query = select(ItilRecord).where(
        ItilRecord.external_system == system, ItilRecord.external_id == external_id
    )
    if for_update:
        query = query.with_for_update()
    return session.execute(query.limit(1)).scalar_one_or_none()


# A due mirror row as read: its id and ``refreshed_at`` (the claim's condition).
Due = tuple[str, datetime | None]


def due_mirrors(
    session: Session, *, system: str, before: datetime, after: Due | None, limit: int
) -> Sequence[Due]:
    """Open mirror rows of ``system`` last asked before ``before`` (or never), oldest first
    (never asked first, ties by id), from just past ``after`` (the last row of the
    previous page: keyset on ``(refreshed_at, id)``)."""
    query = select(ItilRecord.id, ItilRecord.refreshed_at).where(
        ItilRecord.external_system == system,
        ItilRecord.external_id.is_not(None),
        ItilRecord.state.not_in(sorted(states.TERMINAL)),
        or_(ItilRecord.refreshed_at.is_(None), ItilRecord.refreshed_at < before),
    )
    if after is not None:
        last_id, last_at = after
        if last_at is None:  # NULLs come first: the rest of them, then every stamped row
            query = query.where(
                or_(
                    and_(ItilRecord.refreshed_at.is_(None), ItilRecord.id > last_id),
                    ItilRecord.refreshed_at.is_not(None),
                )
            )
        else:
            query = query.where(
                ItilRecord.refreshed_at.is_not(None),
                or_(
                    ItilRecord.refreshed_at > last_at,
                    and_(ItilRecord.refreshed_at == last_at, ItilRecord.id > last_id),
                ),
            )
    query = query.order_by(ItilRecord.refreshed_at.asc().nulls_first(), ItilRecord.id).limit(limit)
    return [(row.id, row.refreshed_at) for row in session.execute(query)]


def claim_mirror(
    session: Session, record_id: str, *, was: datetime | None, now: datetime
) -> Row[str, str, str | None, int] | None:
    """Move an open row's ``refreshed_at`` from ``was`` (as read) to ``now``: a conditional
    UPDATE, so of two refreshers only one wins. The row's number, kind, external id and
    version when this one did; None when another did, or the row was closed meanwhile."""
    unchanged = ItilRecord.refreshed_at.is_(None) if was is None else ItilRecord.refreshed_at == was
    result = session.execute(
        update(ItilRecord)
        .where(
            ItilRecord.id == record_id,
            unchanged,
            ItilRecord.state.not_in(sorted(states.TERMINAL)),
        )
        .values(refreshed_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    query = select(
        ItilRecord.number, ItilRecord.kind, ItilRecord.external_id, ItilRecord.version
    ).where(ItilRecord.id == record_id)
    return session.execute(query).one()


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
