"""FastAPI dependencies: who is calling, and may they call this route."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from tenantops.auth import tokens
from tenantops.auth.oidc import OIDCVerifier
from tenantops.auth.policy import allowed_roles
from tenantops.auth.principal import Principal
from tenantops.db import Database
from tenantops.errors import Forbidden, NotAuthenticated

# Reads a browser may make with its web session instead of a token (a JSON link on a
# page). Never a write: those need the token, so the session cookie cannot be
# ridden by another site (CSRF); cross-site reads are kept out by the browser.
SESSION_READS = frozenset({"GET", "HEAD"})


def _session_principal(request: Request) -> Principal | None:
    """The web session's principal, when the web UI is mounted and the request is a read."""
    if request.method not in SESSION_READS:
        return None
    resolve: Callable[[Request], Principal | None] | None = getattr(
        request.app.state, "session_principal", None
    )
    return resolve(request) if resolve is not None else None


def authenticate(request: Request) -> Principal:
    """The principal behind ``Authorization: Bearer`` (for a read: or the web session)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if not header and (signed_in := _session_principal(request)) is not None:
        return signed_in
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


def _check(request: Request, path: str) -> Principal:
    principal = authenticate(request)
    roles = allowed_roles(request.method, path)
    if not principal.roles & roles:
        mine = ", ".join(principal.role_names()) or "no roles"
        raise Forbidden(
            f"{request.method} {path} needs one of: "
            f"{', '.join(sorted(r.value for r in roles)) or 'nobody'} (you have {mine})"
        )
    request.state.principal = principal
    return principal


def authorize(request: Request) -> Principal:
    """Default deny: the caller needs one of the roles the policy table gives this route."""
    checked: Principal | None = getattr(request.state, "principal", None)
    if checked is not None:
        return checked
    route = request.scope.get("route")
    return _check(request, route.path if isinstance(route, APIRoute) else request.url.path)


class GuardedRoute(APIRoute):
    """A route that authenticates and authorises before it reads the request body.

    FastAPI parses the body before running dependencies, so without this a
    caller with no token who sends broken JSON would learn about the body (422)
    before being told who may call (401/403).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        path = self.path

        async def guarded(request: Request) -> Response:
            await run_in_threadpool(_check, request, path)
            return await handler(request)

        return guarded


Caller = Annotated[Principal, Depends(authorize)]
