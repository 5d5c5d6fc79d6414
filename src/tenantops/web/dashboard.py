"""The KPI dashboard page (``/``) and its JSON twin (``GET /api/v1/kpis``)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response

from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db
from tenantops.kpis.schemas import SORT_KEYS, KpiFilter, KpiReport, TenantKpis
from tenantops.kpis.service import compute_kpis, filter_options
from tenantops.web.pagekit import Filter, database, page_principal, render, to_login

PAGE_ROWS = 200  # table rows on the page; the tiles and charts count every tenant

router = APIRouter(include_in_schema=False)
api = APIRouter(
    prefix="/api/v1/kpis",
    route_class=GuardedRoute,
    tags=["kpis"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 422),
)

Sort = Annotated[str, Query(max_length=32, description="A column; prefix - for descending")]


def _cost_column(request: Request) -> str:
    return str(request.app.state.settings.finops.cost_column)


@api.get("", summary="Tenant KPIs, overall and per tenant", response_model=KpiReport)
def get_kpis(
    request: Request,
    db: Db,
    principal: Caller,
    state: Filter = None,
    region: Filter = None,
    tier: Filter = None,
    sort: Sort = "name",
    limit: Annotated[
        int | None, Query(ge=1, le=100_000, description="At most this many tenant rows")
    ] = None,
) -> Response:
    filters = KpiFilter(state=state, region=region, tier=tier, sort=sort, limit=limit)
    with db.read() as session:
        report = compute_kpis(
            session, principal=principal, filters=filters, cost_column=_cost_column(request)
        )
    # Serialized once, by the model that built it: FastAPI would validate the
    # 10,000 rows of an unpaged report again before serializing them.
    return Response(report.model_dump_json(), media_type="application/json")


def _cost_bars(rows: list[TenantKpis], top: int = 10) -> list[tuple[str, float]]:
    """The tenants spending most of their budget, as percent of it."""
    spent = [r for r in rows if r.budget_ratio is not None]
    spent.sort(key=lambda r: (-(r.budget_ratio or 0), r.name))
    return [(r.name, float(r.budget_ratio or 0) * 100) for r in spent[:top]]


def _sort_link(filters: KpiFilter, key: str) -> str:
    """The query string that sorts by ``key``, flipping the order when already sorted by it."""
    sort = f"-{key}" if filters.sort == key else key
    params = {k: v for k, v in filters.model_dump().items() if v and k not in ("sort", "limit")}
    return "?" + urlencode({**params, "sort": sort})


@router.get("/")
def dashboard(
    request: Request,
    state: Filter = None,
    region: Filter = None,
    tier: Filter = None,
    sort: Sort = "name",
) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    if sort.removeprefix("-") not in SORT_KEYS:
        sort = "name"
    filters = KpiFilter(
        state=state or None, region=region or None, tier=tier or None, sort=sort, limit=PAGE_ROWS
    )
    db = database(request)
    with db.read() as session:
        report = compute_kpis(
            session, principal=principal, filters=filters, cost_column=_cost_column(request)
        )
        options = filter_options(session, principal)
    return render(
        request,
        "dashboard.html",
        {
            "principal": principal,
            "report": report,
            "filters": filters,
            "options": options,
            "sort_link": lambda key: _sort_link(filters, key),
            "state_bars": list(report.overall.by_state.items()),
            "cost_bars": _cost_bars(report.tenants),
        },
    )
