"""The ASGI application: ``create_app(settings)`` wires everything, builds nothing at import."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from tenantops import __version__
from tenantops.accessreview.routes import router as access_review_router
from tenantops.alerts.routes import router as alerts_router
from tenantops.audit.routes import router as audit_router
from tenantops.auth.oidc import OIDCVerifier
from tenantops.breakglass.routes import router as breakglass_router
from tenantops.compliance.routes import router as compliance_router
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.health.routes import router as probe_router
from tenantops.errors import PROBLEM_BASE, AppError
from tenantops.events.metrics import OutboxCollector
from tenantops.events.routes import catalogue_router as asyncapi_router
from tenantops.events.routes import router as events_router
from tenantops.finops.metrics import CostCollector
from tenantops.finops.routes import router as finops_router
from tenantops.itil.routes import router as itil_router
from tenantops.kit.context import request_id_var
from tenantops.kit.ids import new_id
from tenantops.logs import configure_logging
from tenantops.notifications.routes import router as notifications_router
from tenantops.oncall.routes import router as oncall_router
from tenantops.reports.routes import router as reports_router
from tenantops.requests.routes import router as requests_router
from tenantops.runbooks.routes import router as runbooks_router
from tenantops.secrets.routes import router as secrets_router
from tenantops.tenants.routes import router as tenants_router
from tenantops.web.routes import mount as mount_web
from tenantops.wiring import build_gate_checks, build_relay, build_worker

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("tenantops.http")


def problem(status: int, title: str, detail: str, slug: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's).

    Asks each route whether it would fully match the request under another
    method, so included routers are covered without walking their internals.
    """
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    ]


def _not_json(request: Request, exc: RequestValidationError) -> bool:
    """Whether an API body was refused because it was sent as something other than JSON."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not kind or kind == "application/json" or kind.endswith("+json"):
        return False
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return False  # a route that takes a form or a file says what was missing
    if not request.url.path.startswith("/api/"):
        return False  # the web pages post forms
    return any(tuple(err.get("loc", ()))[:1] == ("body",) for err in exc.errors())


def _message(err: Mapping[str, Any]) -> str:
    """Pydantic's message, with the parser's reason for a body that is not JSON."""
    if err.get("type") == "json_invalid":
        reason = (err.get("ctx") or {}).get("error")
        where = err.get("loc", ())[-1:]
        at = f" at character {where[0]}" if where and isinstance(where[0], int) else ""
        return f"not valid JSON ({reason}{at})" if reason else "not valid JSON"
    return str(err.get("msg", ""))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="tenantops"'} if exc.status == 401 else None
        return JSONResponse(
            exc.to_problem(instance=request.url.path),
            status_code=exc.status,
            media_type=PROBLEM_JSON,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        instance = request.url.path
        if _not_json(request, exc):
            return problem(
                415,
                "Unsupported media type",
                f"send the body as application/json, not {request.headers['content-type']}",
                "unsupported-media-type",
                instance=instance,
            )
        errors = [
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": _message(err),
                "type": str(err.get("type", "")),
            }
            for err in exc.errors()
        ]
        # Every problem in one sentence, so a CLI user fixes them all in one go.
        parts = [
            f"{'.'.join(p for p in err['loc'] if p != 'body') or 'request'}: {err['msg']}"
            if err["type"] != "json_invalid"
            else f"body: {err['msg']}"
            for err in errors[:5]
        ]
        if len(errors) > 5:
            parts.append(f"and {len(errors) - 5} more")
        return problem(
            422,
            "Invalid request",
            "; ".join(parts) or "invalid request",
            "validation",
            instance=instance,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {400: "Bad request", 404: "Not found", 405: "Method not allowed"}
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":  # no route: say which path
            detail = f"nothing at {request.method} {request.url.path}; see /docs for the API"
        response = problem(
            exc.status_code,
            titles.get(exc.status_code, "HTTP error"),
            detail,
            f"http-{exc.status_code}",
            instance=request.url.path,
        )
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem(
            500,
            "Internal error",
            "an unexpected error occurred; see the server log",
            "internal",
            request_id=request_id_var.get(),
        )


def _install_middleware(app: FastAPI, registry: CollectorRegistry) -> None:
    requests = Counter(
        "tenantops_http_requests_total",
        "HTTP requests",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "tenantops_http_request_seconds",
        "HTTP request latency",
        ["method", "route"],
        registry=registry,
    )

    @app.middleware("http")
    async def _request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        incoming = request.headers.get("x-request-id", "")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else new_id()
        token = request_id_var.set(rid)
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        elapsed = time.perf_counter() - started
        requests.labels(request.method, template, str(response.status_code)).inc()
        latency.labels(request.method, template).observe(elapsed)
        response.headers["X-Request-ID"] = rid
        log.info(
            "request",
            method=request.method,
            route=template,
            status=response.status_code,
            ms=round(elapsed * 1000, 1),
            request_id=rid,
        )
        return response


def create_app(settings: Settings, *, db: Database | None = None) -> FastAPI:
    """The API application for ``settings``; ``db`` may be shared with a worker or test."""
    if not structlog.is_configured():
        configure_logging(settings.log_level, json=settings.log_json)
    database = db or Database(settings.resolved_database_url())
    registry = CollectorRegistry()

    worker = build_worker(settings, database) if settings.worker.in_process else None
    relay = build_relay(settings, database) if settings.events.relay else None
    registry.register(OutboxCollector(database))
    registry.register(CostCollector(database, settings.finops))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for looper in (worker, relay):
            if looper is not None:
                looper.start()
        yield
        for looper in (worker, relay):
            if looper is not None:
                looper.stop()
        if db is None:
            database.dispose()

    app = FastAPI(
        title="tenantops",
        version=__version__,
        summary="Control plane for operating the tenants of a multi-tenant platform.",
        description=(
            "Every change is authorised by role, checked for segregation of duties and "
            "recorded in a hash-chained audit trail. Errors are RFC 9457 problem details."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.worker = worker
    app.state.relay = relay
    app.state.gate_checks = build_gate_checks(settings)  # what gates' approvals must pass
    app.state.oidc = OIDCVerifier(settings.oidc) if settings.oidc.issuer else None
    _install_error_handlers(app)
    _install_middleware(app, registry)
    app.include_router(tenants_router)
    app.include_router(audit_router)
    app.include_router(notifications_router)
    app.include_router(probe_router)
    app.include_router(runbooks_router)
    app.include_router(oncall_router)
    app.include_router(breakglass_router)
    app.include_router(events_router)
    app.include_router(asyncapi_router)
    app.include_router(finops_router)
    app.include_router(alerts_router)
    app.include_router(requests_router)
    app.include_router(secrets_router)
    app.include_router(itil_router)
    app.include_router(reports_router)
    app.include_router(compliance_router)
    app.include_router(access_review_router)
    # The web UI: its pages, GET /api/v1/kpis and the vendored /static files.
    mount_web(app)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness: the database answers")
    def readyz() -> JSONResponse:
        try:
            with database.read() as session:
                session.execute(text("SELECT 1"))
        except Exception:
            return problem(503, "Not ready", "the database does not answer", "not-ready")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
