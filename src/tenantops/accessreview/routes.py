"""JSON API of the Access Review: start one, read its full snapshot (``.../snapshot``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from tenantops.accessreview import service
from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.compliance.routes import DIGEST_HEADER
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db, wake_worker
from tenantops.runbooks import service as runbooks_service
from tenantops.runbooks.schemas import RunRead

router = APIRouter(
    prefix="/api/v1",
    route_class=GuardedRoute,
    tags=["access reviews"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 404, 422, 503),
)

TenantRef = Annotated[str, Path(min_length=1, max_length=63, description="The tenant's id or name")]


class AccessReviewCreate(BaseModel):
    """Why the review is started (optional; shown to security in the notification)."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str | None, Field(min_length=1, max_length=service.MAX_REASON)] = None


@router.post(
    "/tenants/{tenant}/access-reviews",
    summary="Start the Access Review checklist of a tenant",
    status_code=201,
    # A body that cannot be decoded at all (not UTF-8 JSON) is a 400.
    responses=problem_responses(400, 409),
)
def start_access_review(
    tenant: TenantRef,
    request: Request,
    caller: Caller,
    db: Db,
    data: AccessReviewCreate | None = None,
) -> RunRead:
    """Another security user completes its gates; 409 while a review of the tenant is open."""
    with db.write() as session:
        run = service.start_access_review(
            session, principal=caller, ref=tenant, reason=data.reason if data else None
        )
        run_id = run.id
    wake_worker(request)
    with db.read() as session:
        return runbooks_service.read_run(session, principal=caller, run_id=run_id)


@router.get(
    "/tenants/{tenant}/access-reviews/{run_id}/snapshot",
    summary="Download a review's full snapshot (canonical JSON) with its recorded SHA-256",
    response_class=FileResponse,
    responses={200: {"content": {"application/json": {}}}},
)
def download_snapshot(
    tenant: TenantRef,
    run_id: Annotated[str, Path(max_length=36)],
    caller: Caller,
    db: Db,
    request: Request,
) -> FileResponse:
    """Who can reach the tenant, by name: security, governance, auditors and admins only.

    ``X-Evidence-SHA256`` is the digest the snapshot step recorded; the SHA-256
    of the body matches it unless the file changed on disk since.
    """
    with db.read() as session:
        path, digest = service.find_snapshot(
            session,
            principal=caller,
            ref=tenant,
            run_id=run_id,
            data_dir=request.app.state.settings.data_dir,
        )
    return FileResponse(
        path,
        media_type="application/json",
        filename=f"access-review-{run_id}.json",
        headers={DIGEST_HEADER: digest},
    )
