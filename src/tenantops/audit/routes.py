"""JSON API of the audit trail (auditors and admins)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from tenantops.audit import repository
from tenantops.audit.schemas import AuditEntryRead, AuditPage
from tenantops.auth.deps import GuardedRoute, authorize
from tenantops.db import Database
from tenantops.kit.clock import as_utc
from tenantops.kit.problems import problem_responses

router = APIRouter(
    prefix="/api/v1",
    route_class=GuardedRoute,
    tags=["audit"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 422),
)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite stores UTC wall time without an offset, so compare in UTC on every
    # store; a time given without an offset is taken as UTC.
    return as_utc(value).astimezone(UTC) if value is not None else None


@router.get("/audit", summary="Read the audit trail", response_model=AuditPage)
def list_audit(
    request: Request,
    tenant_id: Annotated[str | None, Query(max_length=36)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    """Entries oldest first; pass ``next_after`` as ``after`` for the next page."""
    db: Database = request.app.state.db
    with db.read() as session:
        rows = repository.list_entries(
            session,
            tenant_id=tenant_id,
            actor=actor,
            action=action,
            since=_utc(since),
            until=_utc(until),
            after_seq=after,
            limit=limit,
        )
        items = [AuditEntryRead.model_validate(r) for r in rows]
    return AuditPage(items=items, next_after=items[-1].seq if len(items) == limit else None)
