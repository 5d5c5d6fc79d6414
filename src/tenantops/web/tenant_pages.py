"""The tenants list (``/tenants``) and a tenant's page (``/tenants/{ref}``), with its actions.

Routes only: what a page shows is assembled by ``tenant_view`` from the
services the JSON API calls, as the session's principal. An action is a form
posted to ``/tenants/{ref}/actions/{action}`` with the session's CSRF token; a
refusal (role, state, stale version, bad form) re-renders the page with the
reason next to the form and changes nothing. Starting a checklist (Access
Review, Budget Review) is posted the same way and lands on the new run's page
with a one-time message (``flash``); a review already open (409) brings the
viewer back to the tenant page with the reason, where the open run is linked.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from tenantops.auth.principal import Principal
from tenantops.errors import AppError, Conflict, NotFound
from tenantops.finops.settings import FinOpsSettings
from tenantops.kit.web import wake_worker
from tenantops.kpis.service import filter_options
from tenantops.web import flash, tenant_actions, tenant_checklists, tenant_list, tenant_view
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

router = APIRouter(include_in_schema=False)

# Checked by hand (``_known_shape``): a ref no tenant can have is the 404 page, not a 422.
Ref = Annotated[str, Path()]
Search = Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00-\x1f]*$")]
Cursor = Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_-]*$")]
Older = Annotated[int | None, Query(ge=1, le=2**62)]
ActionName = Annotated[str, Path()]


def _known_shape(ref: str) -> bool:
    """Whether ``ref`` could name a tenant (an id or a name: short, printable)."""
    return 0 < len(ref) <= 63 and all(0x20 < ord(c) < 0x7F for c in ref)


def _flash_path(ref: str) -> str:
    """The tenant page's path: where its one-time message is kept."""
    return f"/tenants/{quote(ref, safe='')}"


def _finops(request: Request) -> FinOpsSettings:
    settings: FinOpsSettings = request.app.state.settings.finops
    return settings


@router.get("/tenants")
def tenants_list(
    request: Request,
    q: Search = None,
    state: Filter = None,
    region: Filter = None,
    tier: Filter = None,
    cursor: Cursor = None,
) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    query = tenant_list.ListQuery(
        q=(q or "").strip() or None,
        state=state or None,
        region=region or None,
        tier=tier or None,
        cursor=cursor or None,
    )
    try:
        with database(request).read() as session:
            listing = tenant_list.list_tenants(session, principal=principal, query=query)
            options = filter_options(session, principal)
    except AppError as exc:
        return error_page(request, exc.title, exc.detail, exc.status)
    return render(
        request,
        "tenants.html",
        {
            "principal": principal,
            "listing": listing,
            "options": options,
            "link": lambda **changes: "/tenants?" + urlencode(query.params(**changes)),
        },
    )


def _page(
    request: Request,
    principal: Principal,
    ref: str,
    *,
    older: int | None = None,
    runs_cursor: str | None = None,
    done: str | None = None,
    failed: tuple[str, AppError, dict[str, str]] | None = None,
    message: tuple[str, str] | None = None,
) -> Response:
    """The tenant page, or the error page for a tenant the viewer may not see."""
    settings = _finops(request)
    if not _known_shape(ref):
        return error_page(request, "Not found", "There is no such tenant.", 404)
    try:
        with database(request).read() as session:
            page = tenant_view.build_page(
                session,
                principal=principal,
                ref=ref,
                older=older,
                runs_cursor=runs_cursor,
                cost_column=str(settings.cost_column),
                default_thresholds=list(settings.default_thresholds),
            )
    except NotFound:
        return error_page(request, "Not found", f"There is no tenant {ref}.", 404)
    except AppError as exc:
        return error_page(request, exc.title, exc.detail, exc.status)
    name = page.tenant.name
    return render(
        request,
        "tenant.html",
        {
            "principal": principal,
            "page": page,
            "done": tenant_actions.ACTIONS.get(done or ""),
            "failed": failed,
            "failed_action": tenant_actions.ACTIONS.get(failed[0]) if failed else None,
            "failed_checklist": tenant_checklists.CHECKLISTS.get(failed[0]) if failed else None,
            "flash": message,
            "base": f"/tenants/{quote(name, safe='')}",
            "evidence": tenant_view.evidence_summary,
        },
        status=failed[1].status if failed else 200,
    )


@router.get("/tenants/{ref}")
def tenant_page(
    request: Request,
    ref: Ref,
    older: Older = None,
    runs: Cursor = None,
    done: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    response = _page(
        request,
        principal,
        ref,
        older=older,
        runs_cursor=runs or None,
        done=done,
        message=flash.read(request),
    )
    return flash.shown(request, response, path=_flash_path(ref))


@router.post("/tenants/{ref}/actions/{action}")
async def tenant_action(request: Request, ref: Ref, action: ActionName) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    form = await posted_form(request)
    if form is None:
        return forbidden(request)
    if not _known_shape(ref):
        return error_page(request, "Not found", "There is no such tenant.", 404)
    if action in tenant_checklists.CHECKLISTS:
        return _start_checklist(request, principal, ref, action, form)
    try:
        with database(request).write() as session:
            tenant = tenant_actions.perform(
                session, principal=principal, ref=ref, name=action, form=form
            )
            name = tenant.name
    except NotFound as exc:
        return error_page(request, "Not found", exc.detail, 404)
    except AppError as exc:
        # The transaction rolled back: nothing changed. Say why next to the form.
        return _page(request, principal, ref, failed=(action, exc, form))
    wake_worker(request)
    target = f"/tenants/{quote(name, safe='')}?{urlencode({'done': action})}"
    return RedirectResponse(target, status_code=303)


def _start_checklist(
    request: Request, principal: Principal, ref: str, name: str, form: dict[str, str]
) -> Response:
    """Start checklist ``name`` and open its run's page, or say why not on the tenant page."""
    checklist = tenant_checklists.CHECKLISTS[name]
    try:
        with database(request).write() as session:
            run = tenant_checklists.start(
                session, principal=principal, ref=ref, name=name, form=form
            )
            run_id, text = run.id, tenant_checklists.started_message(checklist, run)
    except NotFound as exc:
        return error_page(request, "Not found", exc.detail, 404)
    except Conflict as exc:
        # Started meanwhile (the page offered it): the page now links to the open run.
        return flash.redirect(
            request,
            _flash_path(ref),
            path=_flash_path(ref),
            level="error",
            text=f"{checklist.title} not started: {exc.detail}. Nothing was changed.",
        )
    except AppError as exc:
        # The transaction rolled back: nothing changed. Say why next to the form.
        return _page(request, principal, ref, failed=(name, exc, form))
    wake_worker(request)  # take the snapshot at once, as the API does
    path = f"/runs/{quote(run_id, safe='')}"
    return flash.redirect(request, path, path=path, level="ok", text=text)
