"""JSON API of on-call: ``/api/v1/oncall`` — the configuration, who is on call, pages.

Pages are answered here (acknowledge, resolve) by the staff who may be on
call; their escalation happens in the worker's sweep, never in a request. A
principal bound to a tenant is refused whatever its roles: pages and rotations
span every tenant (and name the people on call), and are not scoped.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import AwareDatetime

from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.auth.principal import Principal
from tenantops.drivers.notify.settings import SCHEMES
from tenantops.errors import Forbidden
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db
from tenantops.oncall import service
from tenantops.oncall.schemas import (
    ConfigApplied,
    OnCallNow,
    OncallOverview,
    PageCreate,
    PageDetail,
    PageList,
    PageRead,
)


def staff_only(caller: Caller) -> Principal:
    """Refuse a principal bound to a tenant: on-call is the platform staff's."""
    if caller.tenant_scoped:
        raise Forbidden("on-call is for platform staff; a principal bound to a tenant sees none")
    return caller


router = APIRouter(
    prefix="/api/v1/oncall",
    route_class=GuardedRoute,
    tags=["oncall"],
    dependencies=[Depends(authorize), Depends(staff_only)],
    responses=problem_responses(401, 403, 404, 422, 503),
)

PageRef = Annotated[str, Path(min_length=1, max_length=36, description="The page's id")]


@router.get("", summary="The on-call configuration in force and who is on call now")
def overview(db: Db) -> OncallOverview:
    with db.read() as session:
        return OncallOverview(
            config=service.current_config(session), now=service.on_call_at(session)
        )


@router.put(
    "/config",
    summary="Apply an on-call document (validated whole; a new version only if it changed)",
    responses=problem_responses(400),
)
def apply_config(
    request: Request,
    db: Db,
    caller: Caller,
    document: Annotated[
        dict[str, Any], Body(description="rotations, policies, routes, default (docs/oncall.md)")
    ],
) -> ConfigApplied:
    configured = request.app.state.settings.channels
    channels = {f"{s}:{name}" for s in SCHEMES for name in configured.names(s)}
    with db.write() as session:
        return service.apply_config(session, document, caller, channels=channels)


@router.get("/now", summary="Who is on call at a moment (default now), rotation by rotation")
def now(
    db: Db,
    at: Annotated[AwareDatetime | None, Query(description="RFC 3339 instant")] = None,
) -> OnCallNow:
    with db.read() as session:
        return service.on_call_at(session, at)


@router.get("/pages", summary="Pages, newest first")
def list_pages(
    db: Db,
    caller: Caller,
    status: Annotated[
        str | None, Query(description="triggered, acknowledged, resolved; or open")
    ] = None,
    tenant: Annotated[
        str | None, Query(min_length=1, max_length=63, description="Tenant id or name")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> PageList:
    with db.read() as session:
        return service.list_pages(
            session,
            status=None if status == "open" else status,
            open_only=status == "open",
            tenant=tenant,
            cursor=cursor,
            limit=limit,
            principal=caller,
        )


@router.get("/pages/{page}", summary="A page with its timeline")
def get_page(page: PageRef, db: Db) -> PageDetail:
    with db.read() as session:
        return service.get_page(session, page_id=page)


@router.post(
    "/pages",
    summary="Page on-call by hand (idempotent per key, kept under manual:)",
    status_code=201,
    responses=problem_responses(400),
)
def trigger(data: PageCreate, db: Db, caller: Caller) -> PageRead:
    with db.write() as session:
        return service.trigger(
            session,
            key=service.manual_key(data.key),
            summary=data.summary,
            severity=data.severity,
            actor=caller,
            tenant_id=data.tenant,
        )


@router.post("/pages/{page}/acknowledge", summary="Acknowledge a page: it escalates no further")
def acknowledge(page: PageRef, db: Db, caller: Caller) -> PageRead:
    with db.write() as session:
        return service.acknowledge_page(session, page_id=page, actor=caller)


@router.post("/pages/{page}/resolve", summary="Resolve (close) a page")
def resolve(page: PageRef, db: Db, caller: Caller) -> PageRead:
    with db.write() as session:
        return service.resolve_page(session, page_id=page, actor=caller)
