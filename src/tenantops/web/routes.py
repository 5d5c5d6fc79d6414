"""HTML pages (login, logout, the KPI dashboard) and the JSON KPI endpoint.

Pages authenticate with the session cookie, not a bearer token; every page
builds the session's ``Principal`` and calls the same services as the API, so
the role table and tenant scope are the API's. Every non-GET page checks the
session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.auth.principal import Principal
from tenantops.db import Database
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db
from tenantops.web import service
from tenantops.web.kpis import (
    SORT_KEYS,
    KpiFilter,
    KpiReport,
    TenantKpis,
    compute_kpis,
    filter_options,
)

HERE = Path(__file__).parent
SESSION_COOKIE = "tenantops_session"
LOGIN_CSRF_COOKIE = "tenantops_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_FORM_BYTES = 16 * 1024
PAGE_ROWS = 200  # table rows on the page; the tiles and charts count every tenant
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
FAILED_LOGIN = "Wrong username or password, or too many attempts: wait a moment and try again."
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

pages = APIRouter(include_in_schema=False)
api = APIRouter(
    prefix="/api/v1/kpis",
    route_class=GuardedRoute,
    tags=["kpis"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 422),
)

# Printable, no NUL (PostgreSQL text cannot hold it): anything else is a 422, not a 500.
Filter = Annotated[str | None, Query(max_length=64, pattern=r"^[^\x00-\x1f]*$")]
Sort = Annotated[str, Query(max_length=32, description="A column; prefix - for descending")]


def mount(app: FastAPI) -> None:
    """Add the web UI to ``app``: pages, the KPI API, the vendored static files."""
    app.state.web_settings = app.state.settings.web
    app.state.web_templates = Jinja2Templates(directory=HERE / "templates")
    app.include_router(pages)
    app.include_router(api)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


# --- the JSON API --------------------------------------------------------------------


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
) -> KpiReport:
    filters = KpiFilter(state=state, region=region, tier=tier, sort=sort, limit=limit)
    with db.read() as session:
        return compute_kpis(
            session, principal=principal, filters=filters, cost_column=_cost_column(request)
        )


# --- sessions ---------------------------------------------------------------------------


def _secure(request: Request) -> bool:
    mode = request.app.state.web_settings.secure_cookies
    if mode != "auto":
        return bool(mode == "always")
    return not (request.url.scheme == "http" and request.url.hostname in LOCAL_HOSTS)


def _page_principal(request: Request) -> Principal | None:
    """The principal of the request's session (idle timeout slid), or ``None``."""
    value = request.cookies.get(SESSION_COOKIE)
    if not value or len(value) > 100:
        return None
    db: Database = request.app.state.db
    with db.write() as session:
        return service.resume(session, value)


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/`` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x20 for c in target):
        return "/"
    return target


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST, first value of each field."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _render(
    request: Request, template: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.web_templates
    response = templates.TemplateResponse(request, template, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def _forbidden(request: Request) -> HTMLResponse:
    return _render(
        request,
        "error.html",
        {
            "title": "Forbidden",
            "message": "The form expired or did not come from this site. "
            "Reload the page and try again.",
            "principal": None,
            "csrf": "",
        },
        status=403,
    )


# --- pages ------------------------------------------------------------------------------


@pages.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    if _page_principal(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_form(request, next=safe_next(next), error=None, status=200)


def _login_form(request: Request, *, next: str, error: str | None, status: int) -> Response:
    token = secrets.token_urlsafe(32)
    response = _render(
        request,
        "login.html",
        {"next": next, "error": error, "csrf": token, "principal": None},
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/login",
    )
    return response


@pages.post("/login")
async def login_submit(request: Request) -> Response:
    form = await _form(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not service.csrf_matches(expected, form.get(CSRF_FIELD)):
        return _forbidden(request)
    db: Database = request.app.state.db
    with db.write() as session:
        opened = service.login(
            session, username=form.get("username", ""), password=form.get("password", "")
        )
    target = safe_next(form.get("next"))
    if opened is None:
        return _login_form(request, next=target, error=FAILED_LOGIN, status=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        opened.value,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@pages.post("/logout")
async def logout(request: Request) -> Response:
    value = request.cookies.get(SESSION_COOKIE, "")
    form = await _form(request)
    presented = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not value or not service.csrf_matches(service.csrf_for(value), presented):
        return _forbidden(request)
    db: Database = request.app.state.db
    with db.write() as session:
        service.logout(session, value)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


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


@pages.get("/")
def dashboard(
    request: Request,
    state: Filter = None,
    region: Filter = None,
    tier: Filter = None,
    sort: Sort = "name",
) -> Response:
    principal = _page_principal(request)
    if principal is None:
        return _to_login(request)
    if sort.removeprefix("-") not in SORT_KEYS:
        sort = "name"
    filters = KpiFilter(
        state=state or None, region=region or None, tier=tier or None, sort=sort, limit=PAGE_ROWS
    )
    db: Database = request.app.state.db
    with db.read() as session:
        report = compute_kpis(
            session, principal=principal, filters=filters, cost_column=_cost_column(request)
        )
        options = filter_options(session, principal)
    value = request.cookies.get(SESSION_COOKIE, "")
    return _render(
        request,
        "dashboard.html",
        {
            "principal": principal,
            "csrf": service.csrf_for(value),
            "report": report,
            "filters": filters,
            "options": options,
            "sort_link": lambda key: _sort_link(filters, key),
            "state_bars": list(report.overall.by_state.items()),
            "cost_bars": _cost_bars(report.tenants),
        },
    )
