"""The web UI on the API's app: one router per page group, the vendored static files.

Where a page lives: ``login`` (local sign-in, sign-out), ``oidc_login`` (sign-in
through the OIDC issuer), ``dashboard`` (``/`` and ``GET /api/v1/kpis``),
``tenant_pages`` (``/tenants``), ``tenant_form`` (``/tenants/new``),
``approvals_page`` (``/approvals``), ``runs_pages`` (``/runs``), ``portal``
(``/portal``, the tenant owners' self-service), ``oncall_pages`` (``/oncall``),
``records_pages`` (``/records``, ITIL records). What they share (session, CSRF,
rendering) is ``pagekit``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from tenantops.web import (
    approvals_page,
    dashboard,
    login,
    oidc_login,
    oncall_pages,
    oncall_view,
    pagekit,
    portal,
    records_pages,
    records_view,
    runs_pages,
    tenant_form,
    tenant_pages,
)

HERE = Path(__file__).parent
ROUTERS = (
    login.router,
    oidc_login.router,
    dashboard.router,
    dashboard.api,
    tenant_form.router,  # /tenants/new before /tenants/{ref}
    tenant_pages.router,
    approvals_page.router,
    runs_pages.router,
    portal.router,
    oncall_pages.router,
    records_pages.router,
)


def mount(app: FastAPI) -> None:
    """Add the web UI to ``app``: pages, the KPI API, the vendored static files."""
    app.state.web_settings = app.state.settings.web
    # The JSON API's reads (the "As JSON" and evidence links) also take the web session.
    app.state.session_principal = pagekit.page_principal
    app.state.web_templates = Jinja2Templates(directory=HERE / "templates")
    # The navigation offers a page only to whom the API's role table gives its reads.
    app.state.web_templates.env.globals.update(
        sees_oncall=oncall_view.sees_oncall, sees_records=records_view.sees_records
    )
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
