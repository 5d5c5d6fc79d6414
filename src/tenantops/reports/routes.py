"""JSON API of the governance reports: ``GET /api/v1/reports/sla``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from tenantops.auth.deps import GuardedRoute, authorize
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db
from tenantops.reports import service
from tenantops.reports.schemas import SlaReport

router = APIRouter(
    prefix="/api/v1",
    route_class=GuardedRoute,
    tags=["reports"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 422, 503),
)


@router.get(
    "/reports/sla",
    summary="The weekly SLA/SLO report of an ISO week as JSON, HTML or CSV",
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/json": {"schema": SlaReport.model_json_schema()},
                "text/html": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            }
        }
    },
)
def sla_report(
    db: Db,
    week: Annotated[
        str | None,
        Query(max_length=16, description="ISO week YYYY-Www; default: the last full week (UTC)"),
    ] = None,
    format: Annotated[Literal["json", "html", "csv"], Query()] = "json",
) -> Response:
    """Rendered on request from the runs; a week not over yet is cut off at now."""
    with db.read() as session:
        rendered = service.report_for(session, week=week, fmt=format)
    headers = {}
    if format != "json":
        headers["Content-Disposition"] = f'attachment; filename="{rendered.filename}"'
    return Response(content=rendered.body, media_type=rendered.content_type, headers=headers)
