"""JSON API of the tenant registry: ``/api/v1/tenants`` and ``/api/v1/me``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel

from tenantops.approvals.schemas import ApprovalRequestRead
from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.kit.etag import etag, parse_if_match
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db, wake_worker
from tenantops.requests.service import refuse_requested_name
from tenantops.tenants import service
from tenantops.tenants.lifecycle import TenantState
from tenantops.tenants.repository import TenantFilter
from tenantops.tenants.schemas import (
    ApprovalCreate,
    LifecycleEventCreate,
    OffboardRequest,
    ReactivationDecisionCreate,
    ReactivationRequestCreate,
    SuspendRequest,
    TenantCreate,
    TenantPage,
    TenantRead,
)

router = APIRouter(
    prefix="/api/v1",
    route_class=GuardedRoute,
    tags=["tenants"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 404, 422, 503),
)
# Routes that take a body also answer 400 when it cannot be decoded at all
# (not UTF-8); a body that decodes but does not fit the schema is a 422.
CHANGES = problem_responses(400, 409, 412)

TenantRef = Annotated[str, Path(min_length=1, max_length=63, description="The tenant's id or name")]
IfMatch = Annotated[
    str | None,
    Header(
        description="ETag of the tenant as last read; the change fails with 412 if it moved",
        # Documented, not enforced by FastAPI: parse_if_match refuses anything else
        # with a problem that says what an ETag looks like.
        json_schema_extra={"pattern": r'^\s*(\*|(W/)?"[0-9]{1,18}")\s*$'},
        examples=['"3"'],
    ),
]


def _changed(request: Request, response: Response, tenant: object) -> TenantRead:
    """After a committed change: wake the worker (it may have started a runbook), answer."""
    wake_worker(request)
    return _tenant_response(response, tenant)


def _tenant_response(response: Response, tenant: object) -> TenantRead:
    read = TenantRead.model_validate(tenant)
    response.headers["ETag"] = etag(read.version)
    return read


class Me(BaseModel):
    subject: str
    roles: list[str]
    tenant: str | None
    via: str


@router.get("/me", summary="Who am I", response_model=Me)
def me(caller: Caller) -> Me:
    return Me(
        subject=caller.subject, roles=caller.role_names(), tenant=caller.tenant, via=caller.via
    )


@router.post(
    "/tenants",
    status_code=201,
    summary="Request a tenant",
    response_model=TenantRead,
    responses=problem_responses(400, 409),
)
def create_tenant(
    data: TenantCreate,
    response: Response,
    request: Request,
    caller: Caller,
    db: Db,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="Repeat a request safely: same key and body give the same tenant",
        ),
    ] = None,
) -> TenantRead:
    """Register a tenant in state ``requested`` and open its onboarding approval."""
    with db.write() as session:
        refuse_requested_name(session, data.name)
        tenant, replayed = service.create_tenant(
            session,
            principal=caller,
            data=data,
            idempotency_key=idempotency_key,
            regions=request.app.state.settings.regions,
        )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/api/v1/tenants/{tenant.id}"
    return _changed(request, response, tenant)


@router.get("/tenants", summary="List and search tenants", response_model=TenantPage)
def list_tenants(
    caller: Caller,
    db: Db,
    state: TenantState | None = None,
    region: Annotated[str | None, Query(max_length=64)] = None,
    tier: Annotated[str | None, Query(max_length=32)] = None,
    owner: Annotated[str | None, Query(max_length=320, description="business owner e-mail")] = None,
    q: Annotated[
        str | None, Query(max_length=100, description="text in name, display name or owner")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TenantPage:
    filters = TenantFilter(
        state=state.value if state else None, region=region, tier=tier, owner=owner, q=q
    )
    with db.read() as session:
        rows, next_cursor = service.list_tenants(
            session, principal=caller, filters=filters, cursor=cursor, limit=limit
        )
        items = [TenantRead.model_validate(t) for t in rows]
    return TenantPage(items=items, next_cursor=next_cursor)


@router.get("/tenants/{tenant}", summary="Read a tenant", response_model=TenantRead)
def get_tenant(tenant: TenantRef, response: Response, caller: Caller, db: Db) -> TenantRead:
    with db.read() as session:
        row = service.get_tenant(session, principal=caller, ref=tenant)
        return _tenant_response(response, row)


@router.get(
    "/tenants/{tenant}/approvals",
    summary="Approval requests of a tenant and their decisions",
    response_model=list[ApprovalRequestRead],
)
def list_approvals(tenant: TenantRef, caller: Caller, db: Db) -> list[ApprovalRequestRead]:
    with db.read() as session:
        return service.list_approvals(session, principal=caller, ref=tenant)


@router.post(
    "/tenants/{tenant}/approvals",
    summary="Approve or reject a tenant request (governance or security)",
    response_model=TenantRead,
    responses=CHANGES,
)
def decide_onboarding(
    tenant: TenantRef,
    data: ApprovalCreate,
    response: Response,
    request: Request,
    caller: Caller,
    db: Db,
    if_match: IfMatch = None,
) -> TenantRead:
    """The tenant becomes ``approved`` when both roles approved; one rejection rejects it."""
    with db.write() as session:
        row = service.decide_onboarding(
            session, principal=caller, ref=tenant, data=data, if_match=parse_if_match(if_match)
        )
    return _changed(request, response, row)


@router.post(
    "/tenants/{tenant}/suspend",
    summary="Suspend an active tenant",
    response_model=TenantRead,
    responses=CHANGES,
)
def suspend_tenant(
    tenant: TenantRef,
    data: SuspendRequest,
    response: Response,
    request: Request,
    caller: Caller,
    db: Db,
    if_match: IfMatch = None,
) -> TenantRead:
    with db.write() as session:
        row = service.suspend_tenant(
            session, principal=caller, ref=tenant, data=data, if_match=parse_if_match(if_match)
        )
    return _changed(request, response, row)


@router.post(
    "/tenants/{tenant}/reactivation-requests",
    status_code=201,
    summary="Ask governance to reactivate a suspended tenant",
    response_model=ApprovalRequestRead,
    responses=problem_responses(400, 409),
)
def request_reactivation(
    tenant: TenantRef, data: ReactivationRequestCreate, caller: Caller, db: Db
) -> ApprovalRequestRead:
    with db.write() as session:
        return service.request_reactivation(session, principal=caller, ref=tenant, data=data)


@router.post(
    "/tenants/{tenant}/reactivation-requests/{request_id}/approvals",
    summary="Approve or reject a reactivation request (governance)",
    response_model=TenantRead,
    responses=CHANGES,
)
def decide_reactivation(
    tenant: TenantRef,
    request_id: Annotated[str, Path(min_length=1, max_length=36)],
    data: ReactivationDecisionCreate,
    response: Response,
    request: Request,
    caller: Caller,
    db: Db,
    if_match: IfMatch = None,
) -> TenantRead:
    with db.write() as session:
        row = service.decide_reactivation(
            session,
            principal=caller,
            ref=tenant,
            request_id=request_id,
            data=data,
            if_match=parse_if_match(if_match),
        )
    return _changed(request, response, row)


@router.post(
    "/tenants/{tenant}/offboard",
    summary="Start offboarding a tenant",
    response_model=TenantRead,
    responses=CHANGES,
)
def offboard_tenant(
    tenant: TenantRef,
    data: OffboardRequest,
    response: Response,
    request: Request,
    caller: Caller,
    db: Db,
    if_match: IfMatch = None,
) -> TenantRead:
    with db.write() as session:
        row = service.offboard_tenant(
            session, principal=caller, ref=tenant, data=data, if_match=parse_if_match(if_match)
        )
    return _changed(request, response, row)


@router.post(
    "/tenants/{tenant}/lifecycle-events",
    summary="Record the outcome of a provisioning, verification or offboarding step",
    response_model=TenantRead,
    responses=CHANGES,
)
def record_step(
    tenant: TenantRef,
    data: LifecycleEventCreate,
    response: Response,
    request: Request,
    caller: Caller,
    db: Db,
    if_match: IfMatch = None,
) -> TenantRead:
    with db.write() as session:
        row = service.record_step(
            session, principal=caller, ref=tenant, data=data, if_match=parse_if_match(if_match)
        )
    return _changed(request, response, row)
