"""The on-call pages: who is on call (``/oncall``), a page's timeline, acknowledge and resolve.

Reads call ``oncall.service`` — the functions behind ``GET /api/v1/oncall`` and
``/api/v1/oncall/pages`` — and answering a page calls ``acknowledge_page`` /
``resolve_page`` after the API's role table allowed the viewer
(``oncall_view``). An answer redirects back with a one-time message (``flash``):
what was done, or why it was refused, in which case nothing changed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.errors import AppError, NotFound
from tenantops.oncall import service as oncall
from tenantops.oncall.schemas import PageRead
from tenantops.runbooks.wording import when
from tenantops.web import flash, oncall_view
from tenantops.web.pagekit import (
    database,
    error_page,
    forbidden,
    page_principal,
    posted_form,
    render,
    to_login,
)

router = APIRouter(include_in_schema=False)

FLASH_PATH = "/oncall"
# Checked by hand: an id no page can have is the 404 page, not a 422.
PageId = Annotated[str, Path()]


def _known_shape(page_id: str) -> bool:
    """Whether ``page_id`` could be a page's id (short, printable ASCII)."""
    return 0 < len(page_id) <= 36 and all(0x20 < ord(c) < 0x7F for c in page_id)


def _helpers() -> dict[str, Any]:
    return {
        "when": when,
        "level_text": oncall_view.level_text,
        "next_text": oncall_view.next_text,
    }


@router.get("/oncall")
def oncall_page(request: Request) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    if not oncall_view.sees_oncall(principal):
        return error_page(
            request, "Forbidden", "Your roles do not allow you to see who is on call.", 403
        )
    with database(request).read() as session:
        view = oncall_view.build_page(session, principal=principal)
    context = {"principal": principal, "view": view, "flash": flash.read(request), **_helpers()}
    return flash.shown(request, render(request, "oncall.html", context), path=FLASH_PATH)


@router.get("/oncall/pages/{page_id}")
def page_detail(request: Request, page_id: PageId) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    if not oncall_view.sees_pages(principal):
        return error_page(request, "Forbidden", "Your roles do not allow you to read pages.", 403)
    if not _known_shape(page_id):
        return error_page(request, "Not found", "There is no such page.", 404)
    try:
        with database(request).read() as session:
            detail = oncall.get_page(session, page_id=page_id)
    except AppError as exc:
        return error_page(request, exc.title, exc.detail, exc.status)
    context = {
        "principal": principal,
        "page": detail,
        "may_answer": oncall_view.answers_pages(principal),
        "flash": flash.read(request),
        **_helpers(),
    }
    return flash.shown(request, render(request, "oncall_page.html", context), path=FLASH_PATH)


async def _answer(request: Request, page_id: str, verb: str) -> Response:
    """Acknowledge or resolve ``page_id`` from a CSRF-checked form, as the API would."""
    form = await posted_form(request)
    if form is None:
        return forbidden(request)
    principal = page_principal(request)
    if principal is None:  # the session idled out between the page and the press
        return RedirectResponse("/login?next=%2Foncall", status_code=303)
    if not oncall_view.answers_pages(principal):
        return error_page(
            request, "Forbidden", f"Your roles do not allow you to {verb} pages.", 403
        )
    if not _known_shape(page_id):
        return error_page(request, "Not found", "There is no such page.", 404)
    back = f"/oncall/pages/{page_id}" if form.get("back") == "page" else "/oncall"
    try:
        with database(request).write() as session:
            done = _take(session, principal, page_id, verb)
    except NotFound as exc:
        return error_page(request, "Not found", exc.detail, 404)
    except AppError as exc:
        text = f"Not done: {exc.detail.rstrip('.')}. Nothing was changed."
        return flash.redirect(request, back, path=FLASH_PATH, level="error", text=text)
    text = f"{verb.capitalize()}d: {done.summary} (now {done.status})."
    return flash.redirect(request, back, path=FLASH_PATH, level="ok", text=text)


def _take(session: Session, principal: Principal, page_id: str, verb: str) -> PageRead:
    if verb == "acknowledge":
        return oncall.acknowledge_page(session, page_id=page_id, actor=principal)
    return oncall.resolve_page(session, page_id=page_id, actor=principal)


@router.post("/oncall/pages/{page_id}/acknowledge")
async def acknowledge(request: Request, page_id: PageId) -> Response:
    return await _answer(request, page_id, "acknowledge")


@router.post("/oncall/pages/{page_id}/resolve")
async def resolve(request: Request, page_id: PageId) -> Response:
    return await _answer(request, page_id, "resolve")
