"""FastAPI dependencies: who is calling, and may they call this route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute

from tenantops.auth import tokens
from tenantops.auth.oidc import OIDCVerifier
from tenantops.auth.policy import allowed_roles
from tenantops.auth.principal import Principal
from tenantops.db import Database
from tenantops.errors import Forbidden, NotAuthenticated


def authenticate(request: Request) -> Principal:
    """The principal behind the ``Authorization: Bearer`` header."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise NotAuthenticated(
            "send 'Authorization: Bearer <token>' (an API token or an OIDC access token)"
        )
    value = value.strip()
    if value.startswith(tokens.TOKEN_PREFIX):
        db: Database = request.app.state.db
        with db.read() as session:
            return tokens.authenticate(session, value)
    verifier: OIDCVerifier | None = request.app.state.oidc
    if verifier is None:
        raise NotAuthenticated("this server accepts only tenantops API tokens (no OIDC issuer)")
    return verifier.verify(value)


def authorize(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> Principal:
    """Default deny: the caller needs one of the roles the policy table gives this route."""
    route = request.scope.get("route")
    path = route.path if isinstance(route, APIRoute) else request.url.path
    roles = allowed_roles(request.method, path)
    if not principal.roles & roles:
        mine = ", ".join(principal.role_names()) or "no roles"
        raise Forbidden(
            f"{request.method} {path} needs one of: "
            f"{', '.join(sorted(r.value for r in roles)) or 'nobody'} (you have {mine})"
        )
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(authorize)]
