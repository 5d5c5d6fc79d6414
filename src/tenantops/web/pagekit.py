"""What every HTML page shares: the session cookie, CSRF, rendering, redirects.

Pages authenticate with the session cookie, not a bearer token; each page
builds the session's ``Principal`` and calls the same services as the API, so
the role table and tenant scope are the API's. Every non-GET page checks the
session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``)
with :func:`posted_form`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from tenantops.auth.principal import Principal
from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.web import service

SESSION_COOKIE = "tenantops_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_FORM_BYTES = 16 * 1024
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

# Printable, no NUL (PostgreSQL text cannot hold it): anything else is a 422, not a 500.
Filter = Annotated[str | None, Query(max_length=64, pattern=r"^[^\x00-\x1f]*$")]


def secure(request: Request) -> bool:
    """Whether cookies set on this request carry ``Secure``."""
    mode = request.app.state.web_settings.secure_cookies
    if mode != "auto":
        return bool(mode == "always")
    return not (request.url.scheme == "http" and request.url.hostname in LOCAL_HOSTS)


def database(request: Request) -> Database:
    """The app's database."""
    db: Database = request.app.state.db
    return db


def page_principal(request: Request) -> Principal | None:
    """The principal of the request's session (idle timeout slid), or ``None``."""
    value = request.cookies.get(SESSION_COOKIE)
    if not value or len(value) > 100:
        return None
    with database(request).write() as session:
        return service.resume(session, value)


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session, for forms and the htmx header."""
    value = request.cookies.get(SESSION_COOKIE, "")
    return service.csrf_for(value) if value else ""


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/`` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x20 for c in target):
        return "/"
    return target


def to_login(request: Request) -> RedirectResponse:
    """Send the browser to the login page, coming back here afterwards."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST, first value of each field (empty if oversized).

    NUL characters are dropped: no browser sends them, and PostgreSQL text cannot
    hold them (a forged form would otherwise be a 500, not the form's own error).
    """
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k.replace("\x00", ""): v[0].replace("\x00", "") for k, v in parsed.items()}


async def posted_form(request: Request) -> dict[str, str] | None:
    """The form of a POST whose CSRF token matches the session's, else ``None``."""
    form = await read_form(request)
    value = request.cookies.get(SESSION_COOKIE, "")
    presented = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not value or not service.csrf_matches(service.csrf_for(value), presented):
        return None
    return form


def form_version(form: Mapping[str, str]) -> int | None:
    """The record version a form was rendered with (its ``If-Match``), ``None`` if absent."""
    text = form.get("version", "").strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 18:
        raise Unprocessable("the form's version is not a number; reload the page", param="version")
    return int(text)


def field_messages(
    exc: ValidationError, *, skip: Collection[str] = (), fallback: str = "form"
) -> list[str]:
    """One line per invalid field, in words a person can act on.

    The field is the innermost name of the error's location, list positions and
    ``skip`` (a union's tags) left out: ``contacts.0`` reads as ``contacts``.
    """
    lines = []
    for err in exc.errors()[:10]:
        where = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
        where = [p for p in where if p not in skip]
        field = where[-1].replace("_", " ") if where else fallback
        lines.append(f"{field}: {err.get('msg', 'invalid')}")
    return lines


def render(
    request: Request, template: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    """``template`` with ``context``; ``principal`` and ``csrf`` default to the session's."""
    templates: Jinja2Templates = request.app.state.web_templates
    context.setdefault("csrf", csrf_token(request))
    response = templates.TemplateResponse(request, template, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def error_page(request: Request, title: str, message: str, status: int) -> HTMLResponse:
    """An error page that keeps the navigation when the viewer is signed in."""
    return render(
        request,
        "error.html",
        {"title": title, "message": message, "principal": page_principal(request)},
        status=status,
    )


def forbidden(request: Request) -> HTMLResponse:
    """The answer to a form without a valid CSRF token."""
    return render(
        request,
        "error.html",
        {
            "title": "Forbidden",
            "message": "The form expired or did not come from this site. "
            "Reload the page and try again.",
            "principal": None,
            "csrf": "",
        },
        status=403,
    )
