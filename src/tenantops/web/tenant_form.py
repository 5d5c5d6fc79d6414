"""The intake form of a new tenant (``/tenants/new``), for those who may request one.

It is ``POST /api/v1/tenants`` in a form: the same schema validates it, the same
service registers the tenant in ``requested`` and opens its onboarding approval,
and the role table decides who sees the form. A refused form keeps what was typed
and says what to fix; nothing is stored.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from tenantops.auth.policy import may
from tenantops.auth.principal import Principal
from tenantops.errors import AppError
from tenantops.provisioning.manifests import TIERS
from tenantops.requests.service import refuse_requested_name
from tenantops.tenants import service as tenants
from tenantops.tenants.schemas import ComplianceClass, TenantCreate
from tenantops.web.pagekit import (
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

CREATE_ROUTE = ("POST", "/api/v1/tenants")
FIELDS = (
    "name",
    "display_name",
    "business_owner",
    "compliance_classification",
    "region",
    "tier",
    "monthly_budget",
    "currency",
    "contacts",
    "ticket_ref",
)
NOT_ALLOWED = "Only account managers and admins may request a tenant."


def may_create(principal: Principal) -> bool:
    """Whether the API would take a new tenant from ``principal``."""
    return may(principal, *CREATE_ROUTE)


def _form_page(
    request: Request,
    principal: Principal,
    values: dict[str, str],
    errors: list[str],
    status: int = 200,
) -> Response:
    return render(
        request,
        "tenant_new.html",
        {
            "principal": principal,
            "values": values,
            "errors": errors,
            "tiers": list(TIERS),
            "regions": list(request.app.state.settings.regions),
            "classes": [c.value for c in ComplianceClass],
        },
        status=status,
    )


@router.get("/tenants/new")
def new_tenant(request: Request) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    if not may_create(principal):
        return error_page(request, "Forbidden", NOT_ALLOWED, 403)
    return _form_page(request, principal, {"currency": "EUR", "tier": "standard"}, [])


def _body(values: dict[str, str]) -> dict[str, object]:
    """The form as the API's JSON body: contacts one per line or comma-separated."""
    body: dict[str, object] = {k: v.strip() for k, v in values.items() if v.strip()}
    contacts = values.get("contacts", "").replace(",", "\n").split()
    body["contacts"] = [c for c in contacts if c]
    return body


@router.post("/tenants/new")
async def create_tenant(request: Request) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    form = await posted_form(request)
    if form is None:
        return forbidden(request)
    if not may_create(principal):
        return error_page(request, "Forbidden", NOT_ALLOWED, 403)
    values = {k: form.get(k, "") for k in FIELDS}
    try:
        data = TenantCreate.model_validate(_body(values))
    except ValidationError as exc:
        return _form_page(request, principal, values, field_messages(exc), status=422)
    db = database(request)
    try:
        with db.write() as session:
            refuse_requested_name(session, data.name)
            tenant, _ = tenants.create_tenant(
                session,
                principal=principal,
                data=data,
                regions=request.app.state.settings.regions,
            )
            name = tenant.name
    except AppError as exc:
        return _form_page(request, principal, values, [exc.detail], status=exc.status)
    return RedirectResponse(f"/tenants/{name}", status_code=303)
