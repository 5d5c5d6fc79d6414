"""Who may call the finops routes, and the dependency that enforces it.

These entries belong in ``tenantops.auth.policy.ROUTE_ROLES`` (its block
"finops routes"); until the lead moves them there, ``authorize`` grants a
route the roles of either table, so the move changes nothing for callers.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from tenantops.auth.deps import authenticate
from tenantops.auth.policy import allowed_roles
from tenantops.auth.principal import Principal, Role
from tenantops.errors import Forbidden

R = Role
API = "/api/v1"
COST_READERS = frozenset({R.FINANCE, R.ADMIN, R.GOVERNANCE})
COST_WRITERS = frozenset({R.FINANCE, R.ADMIN})
# Tenant owners read their own tenant's cost, budget and ledger (scoped in the service).
TENANT_READERS = COST_READERS | {R.TENANT_OWNER}

FINOPS_ROUTE_ROLES: dict[tuple[str, str], frozenset[Role]] = {
    ("POST", f"{API}/finops/imports"): COST_WRITERS,
    ("GET", f"{API}/finops/imports"): COST_READERS,
    ("GET", f"{API}/finops/costs"): COST_READERS,
    ("GET", f"{API}/tenants/{{tenant}}/costs"): TENANT_READERS,
    ("GET", f"{API}/tenants/{{tenant}}/ledger"): TENANT_READERS,
    ("GET", f"{API}/tenants/{{tenant}}/budget"): TENANT_READERS,
    ("PUT", f"{API}/tenants/{{tenant}}/budget"): COST_WRITERS,
}


def roles_for(method: str, path: str) -> frozenset[Role]:
    key = (method.upper(), path)
    return allowed_roles(method, path) | FINOPS_ROUTE_ROLES.get(key, frozenset())


def _check(request: Request, path: str) -> Principal:
    principal = authenticate(request)
    roles = roles_for(request.method, path)
    if not principal.roles & roles:
        mine = ", ".join(principal.role_names()) or "no roles"
        raise Forbidden(
            f"{request.method} {path} needs one of: "
            f"{', '.join(sorted(r.value for r in roles)) or 'nobody'} (you have {mine})"
        )
    request.state.principal = principal
    return principal


def authorize(request: Request) -> Principal:
    """Default deny, as ``tenantops.auth.deps.authorize``, over both route tables."""
    checked: Principal | None = getattr(request.state, "principal", None)
    if checked is not None:
        return checked
    route = request.scope.get("route")
    return _check(request, route.path if isinstance(route, APIRoute) else request.url.path)


class FinOpsRoute(APIRoute):
    """Authenticates and authorises before the body is read (see ``GuardedRoute``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        path = self.path

        async def guarded(request: Request) -> Response:
            await run_in_threadpool(_check, request, path)
            return await handler(request)

        return guarded


Caller = Annotated[Principal, Depends(authorize)]
