"""Authorization, default deny: the one table of route × role.

A route missing from ``ROUTE_ROLES``, ``PUBLIC_ROUTES`` and
``SELF_AUTHENTICATED_ROUTES`` is refused to everyone (and fails the generated
test in ``tests/auth/test_policy.py``).
Finer rules that depend on the data — segregation of duties, who may record
which step, a tenant owner's scope — live in the services.
"""

from __future__ import annotations

from tenantops.auth.principal import Principal, Role

R = Role
ANYONE = frozenset(Role)

API = "/api/v1"

NOTIFICATION_READERS = frozenset(
    {R.ADMIN, R.OPS_ENGINEER, R.SECURITY, R.GOVERNANCE, R.AUDITOR, R.ACCOUNT_MANAGER}
)

# The event stream spans every tenant: staff only (tenant owners see their own runs).
EVENT_READERS = NOTIFICATION_READERS | {R.FINANCE}
WEBHOOK_READERS = frozenset({R.ADMIN, R.SECURITY, R.AUDITOR})
DELIVERY_READERS = frozenset({R.ADMIN, R.OPS_ENGINEER, R.SECURITY, R.AUDITOR})

# On-call: staff read pages and who is on call; those who may be on call answer pages.
ONCALL_READERS = NOTIFICATION_READERS
ONCALL_RESPONDERS = frozenset({R.OPS_ENGINEER, R.SECURITY, R.ADMIN})

COST_READERS = frozenset({R.FINANCE, R.ADMIN, R.GOVERNANCE})
COST_WRITERS = frozenset({R.FINANCE, R.ADMIN})
REQUESTERS = frozenset({R.TENANT_OWNER, R.ACCOUNT_MANAGER, R.ADMIN})
SECRET_READERS = frozenset(
    {R.ADMIN, R.OPS_ENGINEER, R.SECURITY, R.AUDITOR, R.GOVERNANCE, R.TENANT_OWNER}
)
# The weekly SLA/SLO report names every tenant's runs: governance, who it is for, the
# auditors who check it and the operators it judges; not tenant owners.
SLA_REPORT_READERS = frozenset({R.ADMIN, R.GOVERNANCE, R.AUDITOR, R.OPS_ENGINEER})
EVIDENCE_COLLECTORS = frozenset({R.GOVERNANCE, R.AUDITOR, R.ADMIN})
# ITIL records: staff read, a tenant owner their own tenant's (scoped in the service);
# ops, security and admin work them. An account manager may open a change, governance
# authorises changes (the service holds them to that, and to segregation of duties).
ITIL_READERS = NOTIFICATION_READERS | {R.TENANT_OWNER}
ITIL_WRITERS = frozenset({R.OPS_ENGINEER, R.SECURITY, R.ADMIN})

ROUTE_ROLES: dict[tuple[str, str], frozenset[Role]] = {
    ("GET", f"{API}/me"): ANYONE,
    ("POST", f"{API}/tenants"): frozenset({R.ACCOUNT_MANAGER, R.ADMIN}),
    ("GET", f"{API}/tenants"): ANYONE,
    ("GET", f"{API}/tenants/{{tenant}}"): ANYONE,
    ("GET", f"{API}/tenants/{{tenant}}/approvals"): ANYONE,
    ("POST", f"{API}/tenants/{{tenant}}/approvals"): frozenset({R.GOVERNANCE, R.SECURITY}),
    ("POST", f"{API}/tenants/{{tenant}}/suspend"): frozenset({R.OPS_ENGINEER, R.SECURITY, R.ADMIN}),
    ("POST", f"{API}/tenants/{{tenant}}/reactivation-requests"): frozenset(
        {R.ACCOUNT_MANAGER, R.OPS_ENGINEER, R.TENANT_OWNER, R.ADMIN}
    ),
    (
        "POST",
        f"{API}/tenants/{{tenant}}/reactivation-requests/{{request_id}}/approvals",
    ): frozenset({R.GOVERNANCE}),
    ("POST", f"{API}/tenants/{{tenant}}/offboard"): frozenset({R.ACCOUNT_MANAGER, R.ADMIN}),
    ("POST", f"{API}/tenants/{{tenant}}/lifecycle-events"): frozenset(
        {R.OPS_ENGINEER, R.QA, R.ADMIN}
    ),
    ("GET", f"{API}/audit"): frozenset({R.AUDITOR, R.ADMIN}),
    ("POST", f"{API}/break-glass"): frozenset({R.OPS_ENGINEER, R.SECURITY}),
    # The outbox names stakeholders and incidents: staff only, not tenant owners.
    ("GET", f"{API}/notifications"): NOTIFICATION_READERS,
    ("GET", f"{API}/notifications/{{message_id}}"): NOTIFICATION_READERS,
    ("GET", f"{API}/runs"): ANYONE,
    ("GET", f"{API}/runs/{{run_id}}"): ANYONE,
    # The gate's own roles and segregation of duties are checked by the engine.
    ("POST", f"{API}/runs/{{run_id}}/gates/{{step}}"): frozenset(
        {R.GOVERNANCE, R.SECURITY, R.OPS_ENGINEER, R.QA, R.FINANCE, R.ACCOUNT_MANAGER, R.ADMIN}
        | {R.AUDITOR}  # the Compliance Evidence sign-off
    ),
    ("POST", f"{API}/runs/{{run_id}}/cancel"): frozenset({R.OPS_ENGINEER, R.ADMIN}),
    ("POST", f"{API}/runs/{{run_id}}/retry"): frozenset({R.OPS_ENGINEER, R.ADMIN}),
    ("GET", f"{API}/events"): EVENT_READERS,
    ("GET", f"{API}/events/subscriptions"): WEBHOOK_READERS,
    ("POST", f"{API}/events/subscriptions"): frozenset({R.ADMIN}),
    ("DELETE", f"{API}/events/subscriptions/{{subscription_id}}"): frozenset({R.ADMIN}),
    ("GET", f"{API}/events/deliveries"): DELIVERY_READERS,
    ("POST", f"{API}/events/deliveries/{{delivery_id}}/redeliver"): frozenset(
        {R.ADMIN, R.OPS_ENGINEER}
    ),
    ("GET", f"{API}/maintenance-windows"): ANYONE,
    ("GET", f"{API}/maintenance-windows/{{name}}"): ANYONE,
    ("PUT", f"{API}/maintenance-windows/{{name}}"): frozenset({R.OPS_ENGINEER, R.ADMIN}),
    ("DELETE", f"{API}/maintenance-windows/{{name}}"): frozenset({R.OPS_ENGINEER, R.ADMIN}),
    ("GET", f"{API}/runbooks"): ANYONE,
    ("GET", f"{API}/runbooks/{{runbook_id}}"): ANYONE,
    # FinOps: finance writes; governance reads; a tenant owner reads their own tenant's
    # cost, budget and ledger (scoped in the service).
    ("POST", f"{API}/finops/imports"): COST_WRITERS,
    ("GET", f"{API}/finops/imports"): COST_READERS,
    ("GET", f"{API}/finops/costs"): COST_READERS,
    ("GET", f"{API}/tenants/{{tenant}}/costs"): COST_READERS | {R.TENANT_OWNER},
    ("GET", f"{API}/tenants/{{tenant}}/ledger"): COST_READERS | {R.TENANT_OWNER},
    ("GET", f"{API}/tenants/{{tenant}}/budget"): COST_READERS | {R.TENANT_OWNER},
    ("PUT", f"{API}/tenants/{{tenant}}/budget"): COST_WRITERS,
    # A tenant owner reads only their own tenant's report (scoped in the service).
    ("GET", f"{API}/finops/reports/cost"): COST_READERS | {R.TENANT_OWNER},
    ("POST", f"{API}/tenants/{{tenant}}/budget-reviews"): COST_WRITERS,
    # Access Review: security completes it (SoD: not its starter); governance may start one.
    ("POST", f"{API}/tenants/{{tenant}}/access-reviews"): frozenset(
        {R.SECURITY, R.GOVERNANCE, R.ADMIN}
    ),
    # Its snapshot names who can reach the tenant: not the tenant's own roles, QA or finance.
    ("GET", f"{API}/tenants/{{tenant}}/access-reviews/{{run_id}}/snapshot"): frozenset(
        {R.SECURITY, R.GOVERNANCE, R.AUDITOR, R.ADMIN}
    ),
    ("GET", f"{API}/reports/sla"): SLA_REPORT_READERS,
    # Compliance evidence names the tenant's whole trail: governance and the auditors.
    ("POST", f"{API}/tenants/{{tenant}}/compliance-evidence"): EVIDENCE_COLLECTORS,
    ("POST", f"{API}/compliance-evidence"): EVIDENCE_COLLECTORS,
    ("GET", f"{API}/tenants/{{tenant}}/compliance-evidence/{{run_id}}/bundle"): EVIDENCE_COLLECTORS,
    # --- alerts routes ---
    ("GET", f"{API}/alerts"): frozenset({R.ADMIN, R.OPS_ENGINEER, R.FINANCE, R.SECURITY}),
    # --- end alerts ---
    # --- oncall routes ---
    ("GET", f"{API}/oncall"): ONCALL_READERS,
    ("PUT", f"{API}/oncall/config"): frozenset({R.ADMIN, R.OPS_ENGINEER}),
    ("GET", f"{API}/oncall/now"): ONCALL_READERS,
    ("GET", f"{API}/oncall/pages"): ONCALL_READERS,
    ("POST", f"{API}/oncall/pages"): ONCALL_RESPONDERS,
    ("GET", f"{API}/oncall/pages/{{page}}"): ONCALL_READERS,
    ("POST", f"{API}/oncall/pages/{{page}}/acknowledge"): ONCALL_RESPONDERS,
    ("POST", f"{API}/oncall/pages/{{page}}/resolve"): ONCALL_RESPONDERS,
    # --- end oncall ---
    # The KPI dashboard's numbers; a tenant owner gets only their tenant (scoped in the service).
    ("GET", f"{API}/kpis"): ANYONE,
    # Secrets inventory (metadata only); a tenant owner reads their own tenant's (scoped in
    # the service) and, like ops and security, records the rotations they made.
    ("GET", f"{API}/secrets"): SECRET_READERS,
    ("PUT", f"{API}/secrets/{{tenant}}/registrations"): frozenset(
        {R.OPS_ENGINEER, R.SECURITY, R.ADMIN}
    ),
    ("POST", f"{API}/secrets/{{tenant}}/rotations"): frozenset(
        {R.OPS_ENGINEER, R.SECURITY, R.TENANT_OWNER, R.ADMIN}
    ),
    # Self-service requests: a tenant owner for their own tenant (scoped in the service).
    ("POST", f"{API}/tenants/{{tenant}}/requests"): REQUESTERS,
    ("GET", f"{API}/tenants/{{tenant}}/requests"): REQUESTERS,
    # --- itil routes ---
    ("GET", f"{API}/itil/records"): ITIL_READERS,
    ("POST", f"{API}/itil/records"): ITIL_WRITERS | {R.ACCOUNT_MANAGER},
    ("GET", f"{API}/itil/records/{{record}}"): ITIL_READERS,
    ("POST", f"{API}/itil/records/{{record}}/transitions"): ITIL_WRITERS | {R.GOVERNANCE},
    ("POST", f"{API}/itil/records/{{record}}/notes"): ITIL_WRITERS,
    ("PUT", f"{API}/itil/records/{{record}}/assignment"): ITIL_WRITERS,
    ("PUT", f"{API}/itil/records/{{record}}/problem"): ITIL_WRITERS,
    # --- end itil ---
}

PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/asyncapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"),
        # The built-in per-tenant probe stands in for a workload's own health endpoint.
        ("GET", "/probe/tenants/{name}"),
        ("GET", "/probe/tenants/{name}/synthetic"),
        ("PUT", "/probe/tenants/{name}/synthetic"),
    }
)

# The web UI's pages and static files take no bearer token: each page checks the
# session cookie itself (a page without a session redirects to /login) and then
# calls the services as the session's principal, so ROUTE_ROLES' roles and the
# tenant scope apply through the services. Non-GET pages check a CSRF token.
WEB_PAGES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("POST", "/logout"),
        # sign-in through the OIDC issuer (authorization code + PKCE)
        ("GET", "/login/oidc"),
        ("GET", "/login/oidc/callback"),
        ("ANY", "/static"),
        # The tenant owners' self-service portal (requests through tenantops.requests).
        ("GET", "/portal"),
        ("POST", "/portal/requests"),
        # tenants list and tenant page; actions call the API's services and role table
        ("GET", "/tenants"),
        ("GET", "/tenants/{ref}"),
        ("POST", "/tenants/{ref}/actions/{action}"),
        # the intake form of a new tenant (the roles of POST /api/v1/tenants)
        ("GET", "/tenants/new"),
        ("POST", "/tenants/new"),
        # approvals inbox (decisions go through the API's services and role table)
        ("GET", "/approvals"),
        ("POST", "/approvals/decide"),
        # runs pages (retry/cancel check the API's roles of /api/v1/runs/{run_id}/retry|cancel)
        ("GET", "/runs"),
        ("GET", "/runs/{run_id}"),
        ("GET", "/runs/{run_id}/steps"),
        ("POST", "/runs/{run_id}/retry"),
        ("POST", "/runs/{run_id}/cancel"),
        # on-call and ITIL records pages (reads and answers check the API's roles of
        # /api/v1/oncall/... and /api/v1/itil/records/...)
        ("GET", "/oncall"),
        ("GET", "/oncall/pages/{page_id}"),
        ("POST", "/oncall/pages/{page_id}/acknowledge"),
        ("POST", "/oncall/pages/{page_id}/resolve"),
        ("GET", "/records"),
        ("GET", "/records/{ref}"),
        ("POST", "/records/{ref}/transition"),
        ("POST", "/records/{ref}/notes"),
    }
)

# Routes that take no tenantops token but check a credential of their own.
SELF_AUTHENTICATED_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        # Alertmanager sends its own bearer token or an HMAC (TENANTOPS_ALERTS__*).
        ("POST", "/api/v1/webhooks/alertmanager"),
    }
)


def allowed_roles(method: str, path: str) -> frozenset[Role]:
    """Roles that may call ``method path`` (a route template); empty means nobody."""
    return ROUTE_ROLES.get((method.upper(), path), frozenset())


def may(principal: Principal, method: str, path: str) -> bool:
    """Whether the role table lets ``principal`` call ``method path`` (a route template).

    Pages use it to offer only the actions the API would accept from the viewer.
    """
    return bool(principal.roles & allowed_roles(method, path))
