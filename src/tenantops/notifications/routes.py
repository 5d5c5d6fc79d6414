"""JSON API of the notification outbox: ``/api/v1/notifications``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db
from tenantops.notifications import service
from tenantops.notifications.repository import NotificationFilter
from tenantops.notifications.schemas import (
    NotificationPage,
    NotificationRead,
    NotificationStatus,
)

router = APIRouter(
    prefix="/api/v1",
    route_class=GuardedRoute,
    tags=["notifications"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 404, 422, 503),
)


@router.get(
    "/notifications",
    summary="Messages of the outbox, newest first",
    response_model=NotificationPage,
)
def list_notifications(
    db: Db,
    caller: Caller,
    tenant: Annotated[
        str | None, Query(min_length=1, max_length=63, description="Tenant id or name")
    ] = None,
    status: NotificationStatus | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> NotificationPage:
    with db.read() as session:
        rows, next_cursor = service.list_notifications(
            session,
            principal=caller,
            filters=NotificationFilter(
                tenant=tenant, status=status.value if status is not None else None
            ),
            cursor=cursor,
            limit=limit,
        )
        items = [NotificationRead.model_validate(r) for r in rows]
    return NotificationPage(items=items, next_cursor=next_cursor)


@router.get(
    "/notifications/{message_id}",
    summary="One message of the outbox",
    response_model=NotificationRead,
)
def get_notification(
    db: Db,
    caller: Caller,
    message_id: Annotated[str, Path(min_length=1, max_length=36)],
) -> NotificationRead:
    with db.read() as session:
        row = service.get_notification(session, principal=caller, message_id=message_id)
        return NotificationRead.model_validate(row)
