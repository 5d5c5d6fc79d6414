"""JSON API of break glass: ``POST /api/v1/break-glass``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.breakglass import service
from tenantops.breakglass.schemas import BreakGlassCreate, BreakGlassRead
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db, wake_worker

router = APIRouter(
    prefix="/api/v1",
    route_class=GuardedRoute,
    tags=["break glass"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(400, 401, 403, 404, 422, 503),
)


@router.post(
    "/break-glass",
    status_code=201,
    summary="Emergency elevated access (time-boxed, audited, reviewed)",
    response_model=BreakGlassRead,
)
def open_break_glass(
    data: BreakGlassCreate,
    request: Request,
    caller: Caller,
    db: Db,
) -> BreakGlassRead:
    """Grant an expiring elevated token; security is notified, a review follows.

    The token is in this response only. It is revoked automatically when its
    time is up; the run stays open on a review gate that another person closes.
    """
    with db.write() as session:
        grant = service.open_break_glass(session, principal=caller, data=data)
    wake_worker(request)
    return grant
