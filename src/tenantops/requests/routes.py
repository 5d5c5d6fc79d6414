"""JSON API of self-service requests: ``/api/v1/tenants/{tenant}/requests``.

The portal's twin: the same service, so a script can file what a tenant owner
files on ``/portal``. A new tenant is requested on the owner's current tenant
(``kind: tenant``); see docs/decisions/0024-self-service-requests-as-gated-runs.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response

from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db, wake_worker
from tenantops.requests import service
from tenantops.requests.schemas import RequestCreate, RequestPage, RequestRead

router = APIRouter(
    prefix="/api/v1/tenants/{tenant}/requests",
    route_class=GuardedRoute,
    tags=["requests"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 404, 422),
)

TenantRef = Annotated[str, Path(min_length=1, max_length=63, description="The tenant's id or name")]


@router.post(
    "",
    status_code=201,
    summary="File a request (new tenant, quota, budget or access) for approval",
    response_model=RequestRead,
    responses=problem_responses(400, 409),
)
def submit_request(
    tenant: TenantRef,
    data: Annotated[RequestCreate, Body()],
    request: Request,
    response: Response,
    caller: Caller,
    db: Db,
) -> RequestRead:
    """Start the request's runbook at its approval gate; nothing changes before approval."""
    with db.write() as session:
        read = service.submit_request(
            session,
            principal=caller,
            ref=tenant,
            data=data,
            regions=request.app.state.settings.regions,
        )
    wake_worker(request)
    response.headers["Location"] = f"/api/v1/runs/{read.id}"
    return read


@router.get("", summary="A tenant's requests, newest first", response_model=RequestPage)
def list_requests(
    tenant: TenantRef,
    caller: Caller,
    db: Db,
    limit: Annotated[int, Query(ge=1, le=200)] = service.PAGE,
) -> RequestPage:
    with db.read() as session:
        return service.list_requests(session, principal=caller, ref=tenant, limit=limit)
