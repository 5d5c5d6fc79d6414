"""The self-service portal of tenant owners (``/portal``) and its request forms.

What the owner sees — their tenant, its runs, cost against budget, contacts,
their requests — comes from the services the API uses, called as the session's
principal, so the tenant scope is the API's: another tenant is a 404 there and
here. A form posts to ``/portal/requests`` and becomes a request through
``tenantops.requests.service`` (an approval-gated run), exactly as
``POST /api/v1/tenants/{tenant}/requests``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import TypeAdapter, ValidationError

from tenantops.auth.policy import may
from tenantops.auth.principal import Principal
from tenantops.config import Settings
from tenantops.errors import AppError, Conflict, NotFound, Unprocessable
from tenantops.finops import service as finops
from tenantops.finops.schemas import TenantCost
from tenantops.kit.web import wake_worker
from tenantops.provisioning.manifests import TIERS
from tenantops.requests import service as requests
from tenantops.requests.schemas import RequestCreate
from tenantops.runbooks import service as runs
from tenantops.tenants import service as tenants
from tenantops.tenants.schemas import ComplianceClass
from tenantops.web.pagekit import (
    Filter,
    database,
    error_page,
    field_messages,
    forbidden,
    page_principal,
    posted_form,
    render,
    to_login,
)

router = APIRouter(include_in_schema=False)

RECENT_RUNS = 10
RECENT_REQUESTS = 20
# The form fields of each kind (anything else a form sends is ignored).
FIELDS: dict[str, tuple[str, ...]] = {
    "tenant": (
        "name",
        "display_name",
        "tier",
        "region",
        "compliance_classification",
        "monthly_budget",
        "currency",
        "justification",
    ),
    "quota": ("tier", "justification"),
    "budget": ("amount", "currency", "justification"),
    "access": ("subject", "permission", "justification"),
}
KIND_TITLES = {
    "tenant": "New tenant",
    "quota": "Quota change",
    "budget": "Budget change",
    "access": "Team member access",
}
_REQUEST = TypeAdapter[Any](RequestCreate)


def _platform_contacts(settings: Settings) -> list[str]:
    """The configured on-call addresses (channel recipients such as slack:… are not people)."""
    return [a for a in settings.notify.oncall if "@" in a and ":" not in a]


def _may_read_costs(principal: Principal) -> bool:
    """The cost API's roles, so the portal shows cost exactly when the API would."""
    return may(principal, "GET", "/api/v1/tenants/{tenant}/costs")


def _page(
    request: Request,
    principal: Principal,
    *,
    kind: str | None = None,
    errors: list[str] | None = None,
    values: dict[str, str] | None = None,
    submitted: str | None = None,
    status: int = 200,
) -> Response:
    settings: Settings = request.app.state.settings
    db = database(request)
    cost: TenantCost | None = None
    try:
        with db.read() as session:
            tenant = tenants.get_tenant(session, principal=principal, ref=principal.tenant or "")
            if _may_read_costs(principal):
                cost = finops.tenant_cost(
                    session,
                    principal=principal,
                    ref=tenant.id,
                    month=None,
                    settings=settings.finops,
                )
            recent = runs.list_runs(
                session,
                principal=principal,
                tenant=tenant.id,
                runbook_id=None,
                status=None,
                cursor=None,
                limit=RECENT_RUNS,
            )
            filed = requests.list_requests(
                session, principal=principal, ref=tenant.id, limit=RECENT_REQUESTS
            )
    except AppError as exc:
        return error_page(request, exc.title, exc.detail, exc.status)
    return render(
        request,
        "portal.html",
        {
            "principal": principal,
            "tenant": tenant,
            "cost": cost,
            "runs": recent.items,
            "requests": filed.items,
            "platform": _platform_contacts(settings),
            "tiers": list(TIERS),
            "classes": [c.value for c in ComplianceClass],
            "kind_titles": KIND_TITLES,
            "active_form": kind,
            "errors": errors or [],
            "values": values or {},
            "submitted": submitted,
        },
        status=status,
    )


@router.get("/portal")
def portal(request: Request, submitted: Filter = None) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    if not principal.tenant_scoped:
        return error_page(
            request,
            "For tenant owners",
            "The self-service portal shows a tenant owner their own tenant. "
            "Staff find every tenant under Tenants.",
            403,
        )
    return _page(request, principal, submitted=submitted)


@router.post("/portal/requests")
async def submit(request: Request) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    form = await posted_form(request)
    if form is None:
        return forbidden(request)
    kind = form.get("kind", "")
    # The tenant the form names; the service refuses any but the owner's own (404).
    ref = form.get("tenant") or principal.tenant or ""
    body: dict[str, Any] = {k: v for k, v in form.items() if k in FIELDS.get(kind, ()) and v}
    body["kind"] = kind
    values = {k: v for k, v in form.items() if k != "csrf_token"}
    try:
        data = _REQUEST.validate_python(body)
    except ValidationError as exc:
        return _page(
            request,
            principal,
            kind=kind,
            errors=field_messages(exc, skip=KIND_TITLES, fallback="request"),
            values=values,
            status=422,
        )
    db = database(request)
    try:
        with db.write() as session:
            filed = requests.submit_request(
                session,
                principal=principal,
                ref=ref,
                data=data,
                regions=request.app.state.settings.regions,
            )
    except (Conflict, Unprocessable) as exc:
        return _page(
            request, principal, kind=kind, errors=[exc.detail], values=values, status=exc.status
        )
    except NotFound:
        # Not even the name the form sent back: the portal shows nothing of other tenants.
        return error_page(request, "Not found", "The form named a tenant that is not yours.", 404)
    except AppError as exc:
        return error_page(request, exc.title, exc.detail, exc.status)
    wake_worker(request)
    return RedirectResponse(f"/portal?submitted={filed.id}#requests", status_code=303)
