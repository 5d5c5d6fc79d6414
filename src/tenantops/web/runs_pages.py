"""Runbook runs: the list (``/runs``), a run's live page, its steps fragment, retry and cancel.

Every read goes through ``runbooks.service.list_runs``/``read_run`` — the
functions behind ``GET /api/v1/runs`` — so a tenant owner sees only their
tenant's runs and another tenant's run is a 404, as in the API. Retry and
cancel call ``service.retry_run``/``cancel_run`` after the API's role table
for ``POST /api/v1/runs/{run_id}/retry|cancel`` allowed the viewer
(``policy.may``); the engine keeps its own rules on which states allow what.
While a run is unfinished its steps fragment asks for itself again every two
seconds (htmx); the fragment of a finished run no longer does.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from tenantops.auth.policy import may
from tenantops.auth.principal import Principal
from tenantops.errors import AppError
from tenantops.kit.web import wake_worker
from tenantops.runbooks import service, spec
from tenantops.runbooks.schemas import CancelRequest
from tenantops.runbooks.wording import span, when
from tenantops.web import flash
from tenantops.web.pagekit import (
    Filter,
    database,
    error_page,
    forbidden,
    page_principal,
    posted_form,
    render,
    to_login,
)
from tenantops.web.run_view import (
    CANCEL_ROUTE,
    RETRY_ROUTE,
    RUN_STATES,
    run_rows,
    run_view,
)

PAGE_SIZE = 50

router = APIRouter(include_in_schema=False)

RunId = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[^\x00-\x1f]+$")]
# Checked by the service (a cursor it did not issue is a 422 shown on the page).
Cursor = Annotated[str | None, Query(max_length=200)]


@router.get("/runs")
def runs_list(
    request: Request,
    state: Filter = None,
    runbook: Filter = None,
    tenant: Filter = None,
    cursor: Cursor = None,
) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    filters = {"state": state or "", "runbook": runbook or "", "tenant": tenant or ""}
    context: dict[str, Any] = {
        "principal": principal,
        "filters": filters,
        "states": RUN_STATES,
        "runbooks": sorted(spec.shipped()),
        "rows": [],
        "next_link": None,
        "first_link": None,
        "error": None,
        "when": when,
    }
    if filters["state"] and filters["state"] not in RUN_STATES:
        context["error"] = f"There is no run state {filters['state']!r}."
        return render(request, "runs.html", context, status=422)
    try:
        with database(request).read() as session:
            page = service.list_runs(
                session,
                principal=principal,
                tenant=filters["tenant"] or None,
                runbook_id=filters["runbook"] or None,
                status=filters["state"] or None,
                cursor=cursor or None,
                limit=PAGE_SIZE,
            )
    except AppError as exc:
        context["error"] = exc.detail
        return render(request, "runs.html", context, status=exc.status)
    kept = {k: v for k, v in filters.items() if v}
    context["rows"] = run_rows(page.items)
    if page.next_cursor:
        context["next_link"] = "/runs?" + urlencode({**kept, "cursor": page.next_cursor})
    if cursor:
        context["first_link"] = "/runs" + (f"?{urlencode(kept)}" if kept else "")
    return render(request, "runs.html", context)


def _run_context(request: Request, principal: Principal, run_id: str) -> dict[str, Any] | Response:
    """The context of a run's page or fragment, or the 404 page."""
    try:
        with database(request).read() as session:
            run = service.read_run(session, principal=principal, run_id=run_id)
    except AppError as exc:
        return error_page(request, exc.title, exc.detail, exc.status)
    return {"principal": principal, "view": run_view(run, principal), "when": when, "span": span}


def _run_page(
    request: Request,
    principal: Principal,
    run_id: str,
    *,
    error: str | None = None,
    reason: str = "",
    status: int = 200,
    message: tuple[str, str] | None = None,
) -> Response:
    context = _run_context(request, principal, run_id)
    if isinstance(context, Response):
        return context
    context.update(error=error, reason=reason, flash=message)
    return render(request, "run.html", context, status=status)


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: RunId) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    # A run started from a tenant page arrives with a one-time message (web.flash).
    response = _run_page(request, principal, run_id, message=flash.read(request))
    return flash.shown(request, response, path=f"/runs/{quote(run_id, safe='')}")


@router.get("/runs/{run_id}/steps")
def run_steps(request: Request, run_id: RunId) -> Response:
    """The live part of a run's page; it polls again only while the run is unfinished."""
    principal = page_principal(request)
    if principal is None:
        login = "/login?" + urlencode({"next": f"/runs/{run_id}"})
        if request.headers.get("hx-request"):
            # A polling fragment whose session ended: the whole page goes to the login.
            return Response(status_code=200, headers={"HX-Redirect": login})
        return RedirectResponse(login, status_code=303)
    context = _run_context(request, principal, run_id)
    if isinstance(context, Response):
        return context
    # A poll that sees the run finished also replaces the action buttons (out of band).
    context["oob"] = bool(request.headers.get("hx-request"))
    return render(request, "_run_steps.html", context)


async def _checked(
    request: Request, route: str, verb: str
) -> tuple[Principal, dict[str, str]] | Response:
    """The viewer and form of a CSRF-checked POST whom the API's role table allows ``route``."""
    form = await posted_form(request)
    if form is None:
        return forbidden(request)
    principal = page_principal(request)
    if principal is None:  # the session idled out: back to the run's page after signing in
        back = urlencode({"next": request.url.path.rsplit("/", 1)[0]})
        return RedirectResponse(f"/login?{back}", status_code=303)
    if not may(principal, "POST", route):
        return error_page(
            request, "Forbidden", f"Your roles do not allow you to {verb} runs.", status=403
        )
    return principal, form


@router.post("/runs/{run_id}/retry")
async def retry(request: Request, run_id: RunId) -> Response:
    checked = await _checked(request, RETRY_ROUTE, "retry")
    if isinstance(checked, Response):
        return checked
    principal, _ = checked
    try:
        with database(request).write() as session:
            service.retry_run(session, principal=principal, run_id=run_id)
    except AppError as exc:
        return _run_page(request, principal, run_id, error=exc.detail, status=exc.status)
    wake_worker(request)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: RunId) -> Response:
    checked = await _checked(request, CANCEL_ROUTE, "cancel")
    if isinstance(checked, Response):
        return checked
    principal, form = checked
    given = form.get("reason", "")
    try:
        reason = CancelRequest(reason=given).reason
    except ValidationError:
        return _run_page(
            request,
            principal,
            run_id,
            error="Say why the run is cancelled (1 to 2000 characters).",
            reason=given[:2000],
            status=422,
        )
    try:
        with database(request).write() as session:
            service.cancel_run(session, principal=principal, run_id=run_id, reason=reason)
    except AppError as exc:
        return _run_page(
            request, principal, run_id, error=exc.detail, reason=given, status=exc.status
        )
    wake_worker(request)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)
