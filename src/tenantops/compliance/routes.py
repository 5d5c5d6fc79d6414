"""JSON API of the Compliance Evidence Collection: start one, download its bundle."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.compliance import service
from tenantops.compliance.periods import PATTERN
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db, wake_worker
from tenantops.runbooks import service as runbooks_service
from tenantops.runbooks.schemas import RunRead
from tenantops.tenants.schemas import Region, Tier

router = APIRouter(
    prefix="/api/v1",
    route_class=GuardedRoute,
    tags=["compliance"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 404, 422, 503),
)

TenantRef = Annotated[str, Path(min_length=1, max_length=63, description="The tenant's id or name")]
DIGEST_HEADER = "X-Evidence-SHA256"


class EvidenceCollectionCreate(BaseModel):
    """Which period to collect; default: the last quarter that has ended."""

    model_config = ConfigDict(extra="forbid")

    period: Annotated[
        str | None,
        Field(pattern=PATTERN, description="A quarter (2026-Q4) or a month (2026-11)"),
    ] = None


@router.post(
    "/tenants/{tenant}/compliance-evidence",
    summary="Start the Compliance Evidence Collection checklist of a tenant's period",
    status_code=201,
    responses=problem_responses(400, 409),
)
def start_collection(
    tenant: TenantRef,
    request: Request,
    caller: Caller,
    db: Db,
    data: EvidenceCollectionCreate | None = None,
) -> RunRead:
    """Another auditor completes its gates; 409 while that tenant and period are collected."""
    with db.write() as session:
        run = service.start_collection(
            session, principal=caller, ref=tenant, period=data.period if data else None
        )
        run_id = run.id
    wake_worker(request)  # collect at once, not at the worker's next poll
    with db.read() as session:
        return runbooks_service.read_run(session, principal=caller, run_id=run_id)


class FleetCollectionCreate(EvidenceCollectionCreate):
    """Which period to collect, of which tenants: every tenant on the platform (active or
    suspended) by default, or those of one region or tier."""

    region: Region | None = None
    tier: Tier | None = None


class CollectionStarted(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    tenant_id: str
    tenant_name: str
    run_id: str


class CollectionSkipped(CollectionStarted):
    why: Annotated[str, Field(description="open: being collected; collected: signed off")]


class FleetCollection(BaseModel):
    """The runs started, one per tenant, and the tenants whose period is open or done."""

    period: str
    started: list[CollectionStarted]
    skipped: list[CollectionSkipped]


@router.post(
    "/compliance-evidence",
    summary="Start the Compliance Evidence Collection of a period for every tenant",
    status_code=201,
    responses={
        **problem_responses(400),
        200: {"description": "Every tenant's period is open or collected already"},
    },
)
def start_collections(
    request: Request,
    response: Response,
    caller: Caller,
    db: Db,
    data: FleetCollectionCreate | None = None,
) -> FleetCollection:
    """All of the runs start in one transaction, or none does; 200 when none was needed.

    Run it again after a failed collection: tenants whose period is open or
    signed off are skipped, so only the failed ones start again.
    """
    data = data or FleetCollectionCreate()
    with db.write() as session:
        fleet = service.start_collections(
            session,
            principal=caller,
            period=data.period,
            region=data.region,
            tier=data.tier,
            regions=request.app.state.settings.regions,
        )
        body = FleetCollection(
            period=fleet.period.label,
            started=[CollectionStarted.model_validate(one) for one in fleet.started],
            skipped=[CollectionSkipped.model_validate(one) for one in fleet.skipped],
        )
    if body.started:
        wake_worker(request)
    else:
        response.status_code = 200
    return body


@router.get(
    "/tenants/{tenant}/compliance-evidence/{run_id}/bundle",
    summary="Download a collection's evidence bundle (canonical JSON) with its recorded SHA-256",
    response_class=FileResponse,
    responses={200: {"content": {"application/json": {}}}},
)
def download_bundle(
    tenant: TenantRef,
    run_id: Annotated[str, Path(max_length=36)],
    caller: Caller,
    db: Db,
    request: Request,
) -> FileResponse:
    """The file as written; ``X-Evidence-SHA256`` is the digest the collect step recorded.

    Recompute the SHA-256 of the body and compare: a bundle changed on disk since
    it was collected no longer matches.
    """
    with db.read() as session:
        found = service.find_bundle(
            session,
            principal=caller,
            ref=tenant,
            run_id=run_id,
            data_dir=request.app.state.settings.data_dir,
        )
    return FileResponse(
        found.path,
        media_type="application/json",
        filename=f"compliance-evidence-{found.period}-{run_id}.json",
        headers={DIGEST_HEADER: found.digest},
    )
