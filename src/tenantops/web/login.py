"""The local login form and sign-out."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from tenantops.web import service
from tenantops.web.pagekit import (
    CSRF_FIELD,
    SESSION_COOKIE,
    database,
    forbidden,
    page_principal,
    posted_form,
    read_form,
    render,
    safe_next,
    secure,
)

LOGIN_CSRF_COOKIE = "tenantops_login_csrf"
FAILED_LOGIN = "Wrong username or password, or too many attempts: wait a moment and try again."

router = APIRouter(include_in_schema=False)


def start_session(request: Request, opened: service.OpenedSession, target: str) -> Response:
    """Redirect to ``target`` with the new session's cookie set.

    A session the browser still holds (signing in again, or as someone else) is
    ended first, so it cannot be picked up again from the old cookie.
    """
    earlier = request.cookies.get(SESSION_COOKIE)
    if earlier and len(earlier) <= 100:
        db = database(request)
        with db.write() as session:
            service.logout(session, earlier)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        opened.value,
        httponly=True,
        samesite="lax",
        secure=secure(request),
        path="/",
    )
    return response


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    if page_principal(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return login_form(request, next=safe_next(next), error=None, status=200)


def login_form(request: Request, *, next: str, error: str | None, status: int) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {
            "next": next,
            "error": error,
            "csrf": token,
            "principal": None,
        },
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path="/login",
    )
    return response


@router.post("/login")
async def login_submit(request: Request) -> Response:
    form = await read_form(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not service.csrf_matches(expected, form.get(CSRF_FIELD)):
        return forbidden(request)
    db = database(request)
    with db.write() as session:
        opened = service.login(
            session, username=form.get("username", ""), password=form.get("password", "")
        )
    target = safe_next(form.get("next"))
    if opened is None:
        return login_form(request, next=target, error=FAILED_LOGIN, status=401)
    response = start_session(request, opened, target)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    if await posted_form(request) is None:
        return forbidden(request)
    db = database(request)
    with db.write() as session:
        service.logout(session, request.cookies[SESSION_COOKIE])
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
