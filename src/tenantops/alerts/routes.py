"""HTTP routes of the alerts domain: the Alertmanager webhook and the list of stored alerts."""

from __future__ import annotations

import json
import threading
from contextlib import nullcontext
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from tenantops.alerts import service
from tenantops.alerts.auth import verify
from tenantops.alerts.dispatch import Dispatch
from tenantops.alerts.schemas import (
    AlertmanagerPayload,
    AlertPage,
    AlertRead,
    AlertStatus,
    ReceiveResult,
)
from tenantops.alerts.settings import AlertsSettings
from tenantops.auth.deps import GuardedRoute, authorize
from tenantops.db import Database
from tenantops.errors import PayloadTooLarge, Unprocessable
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db

router = APIRouter()

webhook_router = APIRouter(
    prefix="/api/v1/webhooks",
    tags=["alerts"],
    responses=problem_responses(401, 413, 422, 503),
)
list_router = APIRouter(
    prefix="/api/v1/alerts",
    route_class=GuardedRoute,
    tags=["alerts"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 422),
)


def parse_payload(body: bytes) -> AlertmanagerPayload:
    """The notification, or a 422 that says every problem at once."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Unprocessable(f"the body is not JSON: {exc}") from exc
    try:
        return AlertmanagerPayload.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        detail = "; ".join(f"{'.'.join(e['loc']) or 'body'}: {e['msg']}" for e in errors[:5])
        raise Unprocessable(
            f"not an Alertmanager webhook payload (version 4): {detail}", errors=errors
        ) from exc


def _dispatch(request: Request, settings: AlertsSettings) -> Dispatch:
    # Built once per application: the extra runbook folder is read once.
    found: Dispatch | None = getattr(request.app.state, "alerts_dispatch", None)
    if found is None:
        found = Dispatch.from_settings(settings)
        request.app.state.alerts_dispatch = found
    return found


# SQLite has one writer. Handler threads that queue here are woken the moment
# the writer commits; queued in SQLite's busy handler they sleep in growing
# steps, which under a burst of notifications costs seconds of latency.
_SQLITE_WRITER = threading.Lock()
# Alertmanager caps a notification's alerts (max_alerts); this bounds what an
# unauthenticated caller can make the server buffer.
MAX_BODY = 10 * 2**20


def _store(db: Database, payload: AlertmanagerPayload, dispatch: Dispatch) -> ReceiveResult:
    with db.read() as session:
        seen = service.already_received(session, payload)
    if seen is not None:
        return seen
    with _SQLITE_WRITER if db.is_sqlite else nullcontext(), db.write() as session:
        return service.receive(session, payload=payload, dispatch=dispatch)


@webhook_router.post(
    "/alertmanager",
    summary="Alertmanager webhook (payload version 4): store, dedupe, start playbooks",
    description=(
        "Authenticated by `Authorization: Bearer <TENANTOPS_ALERTS__BEARER_TOKEN>` or by "
        "`X-Tenantops-Signature: sha256=<hex HMAC-SHA256 of the body>`. Every alert is stored "
        "before the answer; a repeat of the same alert state is a 200 that changes nothing."
    ),
)
async def alertmanager(request: Request, db: Db) -> ReceiveResult:
    settings: AlertsSettings = request.app.state.settings.alerts
    # The route takes no tenantops token: refuse a huge body before buffering it.
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge(f"a notification is at most {MAX_BODY // 2**20} MiB")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise PayloadTooLarge(f"a notification is at most {MAX_BODY // 2**20} MiB")
    verify(settings, request.headers, body)
    payload = parse_payload(body)
    return await run_in_threadpool(_store, db, payload, _dispatch(request, settings))


@list_router.get("", summary="Received alerts, newest first")
def list_alerts(
    db: Db,
    status: AlertStatus | None = None,
    tenant: Annotated[str | None, Query(max_length=200, description="Tenant id or name")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[
        str | None, Query(max_length=100, description="next_after of the previous page")
    ] = None,
) -> AlertPage:
    with db.read() as session:
        rows, next_after = service.list_alerts(
            session, status=status, tenant=tenant, limit=limit, after=after
        )
        return AlertPage(items=[AlertRead.model_validate(r) for r in rows], next_after=next_after)


router.include_router(webhook_router)
router.include_router(list_router)
