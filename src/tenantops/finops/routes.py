"""JSON API of finops: cost imports, cost per tenant and month, budgets, the ledger."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.finops import actions, reports, service
from tenantops.finops.importer import import_file
from tenantops.finops.ledger import LedgerKind
from tenantops.finops.schemas import (
    BudgetRead,
    BudgetWrite,
    CostOverview,
    ImportPage,
    ImportRead,
    LedgerPage,
    TenantCost,
)
from tenantops.finops.settings import FinOpsSettings
from tenantops.finops.upload import receive
from tenantops.kit.etag import etag, parse_if_match
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db, wake_worker
from tenantops.runbooks import service as runbooks_service
from tenantops.runbooks.schemas import RunRead

router = APIRouter(
    prefix="/api/v1",
    route_class=GuardedRoute,
    tags=["finops"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 404, 422, 503),
)

TenantRef = Annotated[str, Path(min_length=1, max_length=63, description="The tenant's id or name")]
MonthParam = Annotated[
    str | None,
    Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM; default: the current month"),
]
IfMatch = Annotated[
    str | None, Header(description="ETag of the budget as last read", examples=['"1"'])
]
FORMATS = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}


def _settings(request: Request) -> FinOpsSettings:
    settings: FinOpsSettings = request.app.state.settings.finops
    return settings


@router.post(
    "/finops/imports",
    summary="Import a FOCUS cost file (CSV or Parquet) as the request body or multipart 'file'",
    responses=problem_responses(409, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                # application/vnd.apache.parquet is accepted too; Parquet is
                # recognised by its content, so it is documented as binary.
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            },
        }
    },
)
async def create_import(
    request: Request,
    response: Response,
    caller: Caller,
    db: Db,
    filename: Annotated[str | None, Query(max_length=500)] = None,
    format: Annotated[Literal["csv", "parquet"] | None, Query()] = None,
) -> ImportRead:
    """Valid files answer 201 (200 when the same file was imported before); 422 lists bad lines."""
    settings = _settings(request)
    content_type = request.headers.get("content-type", "")
    fmt = format or FORMATS.get(content_type.split(";")[0].strip().lower())
    received = await receive(
        request.stream(), content_type=content_type, limit=settings.max_upload_bytes
    )
    try:

        def run() -> ImportRead:
            with db.write() as session:
                result = import_file(
                    session,
                    path=received.path,
                    principal=caller,
                    settings=settings,
                    filename=filename or received.filename or "upload",
                    fmt=fmt,  # type: ignore[arg-type]
                    sha256=received.sha256,
                )
                return service.import_read(result)

        read = await run_in_threadpool(run)
    finally:
        received.path.unlink(missing_ok=True)
    response.status_code = 200 if read.duplicate else 201
    return read


@router.get("/finops/imports", summary="Cost imports, newest first")
def list_imports(
    db: Db,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ImportPage:
    with db.read() as session:
        return service.list_imports(session, cursor=cursor, limit=limit)


@router.get("/finops/costs", summary="Every tenant's cost, forecast and budget of a month")
def cost_overview(
    request: Request,
    db: Db,
    month: MonthParam = None,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CostOverview:
    with db.read() as session:
        return service.cost_overview(
            session, month=month, settings=_settings(request), cursor=cursor, limit=limit
        )


@router.get("/tenants/{tenant}/costs", summary="A tenant's month: cost, forecast, budget ratio")
def tenant_cost(
    tenant: TenantRef, request: Request, caller: Caller, db: Db, month: MonthParam = None
) -> TenantCost:
    with db.read() as session:
        return service.tenant_cost(
            session, principal=caller, ref=tenant, month=month, settings=_settings(request)
        )


@router.get("/tenants/{tenant}/ledger", summary="A tenant's ledger, newest first")
def tenant_ledger(
    tenant: TenantRef,
    caller: Caller,
    db: Db,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    kind: Annotated[list[LedgerKind] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> LedgerPage:
    with db.read() as session:
        return service.tenant_ledger(
            session,
            principal=caller,
            ref=tenant,
            before=before,
            kinds=[k.value for k in kind] if kind else None,
            limit=limit,
        )


@router.get("/tenants/{tenant}/budget", summary="A tenant's monthly budget and thresholds")
def get_budget(
    tenant: TenantRef, request: Request, response: Response, caller: Caller, db: Db
) -> BudgetRead:
    with db.read() as session:
        read = service.get_budget(
            session, principal=caller, ref=tenant, settings=_settings(request)
        )
    response.headers["ETag"] = etag(read.version)
    return read


@router.put(
    "/tenants/{tenant}/budget",
    summary="Set a tenant's monthly budget (recorded in its ledger)",
    responses=problem_responses(400, 412),
)
def put_budget(
    tenant: TenantRef,
    data: BudgetWrite,
    request: Request,
    response: Response,
    caller: Caller,
    db: Db,
    if_match: IfMatch = None,
) -> BudgetRead:
    with db.write() as session:
        read = service.set_budget(
            session,
            principal=caller,
            ref=tenant,
            amount=data.amount,
            currency=data.currency.upper() if data.currency else None,
            thresholds=data.thresholds,
            if_match=parse_if_match(if_match, noun="budget"),
            settings=_settings(request),
        )
    response.headers["ETag"] = etag(read.version)
    return read


@router.get(
    "/finops/reports/cost",
    summary="A month's cost report (all tenants, or one) as HTML, CSV or PDF",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
)
def cost_report(
    request: Request,
    caller: Caller,
    db: Db,
    month: Annotated[
        str | None,
        Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM; default: the previous month"),
    ] = None,
    tenant: Annotated[
        str | None,
        Query(min_length=1, max_length=63, description="A tenant's id or name; default: all"),
    ] = None,
    format: Annotated[Literal["html", "csv", "pdf"], Query()] = "html",
) -> Response:
    """Rendered on request from the current figures; a tenant owner reads only their tenant."""
    with db.read() as session:
        rendered = reports.report_for(
            session,
            principal=caller,
            month=month,
            tenant=tenant,
            fmt=format,
            settings=_settings(request),
        )
    return Response(
        content=rendered.body,
        media_type=rendered.content_type,
        headers={"Content-Disposition": f'attachment; filename="{rendered.filename}"'},
    )


class BudgetReviewCreate(BaseModel):
    """Which month to review; default: the current month."""

    model_config = ConfigDict(extra="forbid")

    month: Annotated[str | None, Field(pattern=r"^\d{4}-\d{2}$")] = None


@router.post(
    "/tenants/{tenant}/budget-reviews",
    summary="Start the Budget Review checklist of a tenant's month",
    status_code=201,
    # A body that cannot be decoded at all (not UTF-8 JSON) is a 400.
    responses=problem_responses(400, 409),
)
def start_budget_review(
    tenant: TenantRef,
    caller: Caller,
    db: Db,
    request: Request,
    data: BudgetReviewCreate | None = None,
) -> RunRead:
    """Finance completes its gates; 409 while a review of that tenant and month is open."""
    with db.write() as session:
        run = actions.start_budget_review(
            session, principal=caller, ref=tenant, month=data.month if data else None
        )
        run_id = run.id
    wake_worker(request)  # take the snapshot at once, not at the worker's next poll
    with db.read() as session:
        return runbooks_service.read_run(session, principal=caller, run_id=run_id)
