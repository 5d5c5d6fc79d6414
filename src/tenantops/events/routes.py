"""JSON API of events: the stream, webhook subscriptions, deliveries; ``/asyncapi.json``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.errors import Forbidden, Unprocessable
from tenantops.events import catalogue, service
from tenantops.events.asyncapi import document
from tenantops.events.retention import pruned_through
from tenantops.events.schemas import (
    DeliveryPage,
    DeliveryRead,
    DeliveryStatus,
    EventPage,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionPage,
    SubscriptionRead,
    known_types,
)
from tenantops.events.webhooks import signing_key
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db, wake_worker
from tenantops.tenants import service as tenants

router = APIRouter(
    prefix="/api/v1/events",
    route_class=GuardedRoute,
    tags=["events"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)

catalogue_router = APIRouter(tags=["events"])

Id = Annotated[str, Path(min_length=1, max_length=36)]
MAX_SEQ = 2**63 - 1  # the largest sequence a 64-bit column holds


@catalogue_router.get(
    "/asyncapi.json", summary="The event catalogue (AsyncAPI 3.0)", response_model=dict[str, Any]
)
def asyncapi() -> dict[str, Any]:
    return document()


# On-call pages name who was paged and when; a principal bound to a tenant sees none of
# them, here as in the on-call API (decision 0039).
STAFF_ONLY_EVENTS = (f"{catalogue.TYPE_PREFIX}oncall.*",)


def _staff_only(caller: Caller) -> None:
    """Webhooks and their deliveries span every tenant: no principal bound to one."""
    if caller.tenant_scoped:
        raise Forbidden("webhooks span every tenant; a principal bound to a tenant sees none")


StaffOnly = Depends(_staff_only)


@router.get("", summary="Events of the outbox, oldest first after a sequence number")
def list_events(
    db: Db,
    caller: Caller,
    after: Annotated[
        int, Query(ge=0, le=MAX_SEQ, description="Only events after this sequence")
    ] = 0,
    type: Annotated[
        list[str] | None, Query(max_length=50, description="Event types; * suffix matches")
    ] = None,
    tenant: Annotated[str | None, Query(max_length=36, description="Tenant id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    last: Annotated[
        int | None,
        Query(ge=1, le=1000, description="Instead: the newest this many (after is ignored)"),
    ] = None,
) -> EventPage:
    """Follow the stream by passing ``next_after`` back as ``after``.

    A principal bound to a tenant reads that tenant's events only (and none of
    the platform's), and no on-call page's: events name people, incidents and
    pages of every tenant.
    """
    hidden: tuple[str, ...] = ()
    try:
        known_types(type or [])
    except ValueError as exc:
        raise Unprocessable(f"type: {exc}") from None
    with db.read() as session:
        if caller.tenant_scoped:
            own = tenants.own_tenant_id(session, caller)
            if own is None or (tenant is not None and tenant != own):
                raise Forbidden("a principal bound to a tenant reads that tenant's events only")
            tenant, hidden = own, STAFF_ONLY_EVENTS
        if last is not None:
            items, end = service.latest(
                session, last=last, types=type or (), tenant_id=tenant, hidden=hidden
            )
        else:
            items, end = service.stream(
                session, after=after, types=type or (), tenant_id=tenant, limit=limit, hidden=hidden
            )
        mark = pruned_through(session)
    return EventPage(items=items, next_after=end, pruned_through=mark)


@router.get("/subscriptions", summary="Webhook subscriptions", dependencies=[StaffOnly])
def list_subscriptions(db: Db) -> SubscriptionPage:
    with db.read() as session:
        rows = service.list_subscriptions(session)
        return SubscriptionPage(items=[SubscriptionRead.model_validate(r) for r in rows])


@router.post(
    "/subscriptions",
    dependencies=[StaffOnly],
    status_code=201,
    summary="Subscribe a webhook; the signing secret is in this response only",
)
def create_subscription(
    data: SubscriptionCreate, request: Request, caller: Caller, db: Db
) -> SubscriptionCreated:
    key = signing_key(request.app.state.settings)
    with db.write() as session:
        sub, secret = service.create_subscription(session, principal=caller, data=data, key=key)
        return SubscriptionCreated.model_validate(
            {**SubscriptionRead.model_validate(sub).model_dump(), "secret": secret}
        )


@router.delete(
    "/subscriptions/{subscription_id}",
    dependencies=[StaffOnly],
    status_code=204,
    summary="Stop a webhook; its pending deliveries are cancelled",
)
def delete_subscription(subscription_id: Id, caller: Caller, db: Db) -> Response:
    with db.write() as session:
        service.delete_subscription(session, principal=caller, subscription_id=subscription_id)
    return Response(status_code=204)


@router.get(
    "/deliveries",
    summary="Webhook deliveries, newest event first",
    dependencies=[StaffOnly],
)
def list_deliveries(
    db: Db,
    status: DeliveryStatus | None = None,
    subscription: Annotated[str | None, Query(max_length=36)] = None,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,18}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryPage:
    with db.read() as session:
        items, next_cursor = service.list_deliveries(
            session,
            status=status.value if status else None,
            subscription_id=subscription,
            before=int(cursor) if cursor else None,
            limit=limit,
        )
    return DeliveryPage(items=items, next_cursor=next_cursor)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    summary="Send a dead or delivered event to its webhook again",
    dependencies=[StaffOnly],
)
def redeliver(delivery_id: Id, request: Request, caller: Caller, db: Db) -> DeliveryRead:
    with db.write() as session:
        read = service.redeliver(session, principal=caller, delivery_id=delivery_id)
    wake_worker(request)
    return read
