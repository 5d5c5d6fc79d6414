"""ITIL records: the list (``/records``), a record's page, moving it and adding a work note.

Every read goes through ``itil.service`` — the functions behind
``GET /api/v1/itil/records`` — as the session's principal, so a tenant owner
sees their own tenant's records and another tenant's record is the 404 page.
A move calls ``service.transition`` with the version the page showed (its
``If-Match``: a record that moved since is refused with 412), a note
``service.add_note``; both after the API's role table allowed the viewer. A
refusal re-renders the record with the reason next to the forms and the
status the API would answer; the transaction rolled back, nothing changed.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from tenantops.auth.policy import may
from tenantops.auth.principal import Principal
from tenantops.errors import AppError, NotFound
from tenantops.itil import service as itil
from tenantops.itil.schemas import NoteCreate, RecordRead, TransitionCreate
from tenantops.itil.states import Kind
from tenantops.runbooks.wording import when
from tenantops.web import flash, oncall_view, records_view
from tenantops.web.pagekit import (
    Filter,
    database,
    error_page,
    field_messages,
    forbidden,
    form_version,
    page_principal,
    posted_form,
    render,
    to_login,
)

PAGE_SIZE = 50
FLASH_PATH = "/records"

router = APIRouter(include_in_schema=False)

# Checked by hand (``_known_shape``): a ref no record can have is the 404 page, not a 422.
Ref = Annotated[str, Path()]
# Checked by the service (a cursor it did not issue is a 422 shown on the page).
Cursor = Annotated[str | None, Query(max_length=200)]
OpenOnly = Annotated[str | None, Query(alias="open", max_length=8)]


def _known_shape(ref: str) -> bool:
    """Whether ``ref`` could name a record (an id or a number: short, printable ASCII)."""
    return 0 < len(ref) <= 40 and all(0x20 < ord(c) < 0x7F for c in ref)


def _helpers() -> dict[str, Any]:
    return {"when": when, "label": records_view.label, "priorities": records_view.PRIORITIES}


@router.get("/records")
def records_list(
    request: Request,
    kind: Filter = None,
    state: Filter = None,
    tenant: Filter = None,
    open_only: OpenOnly = None,
    cursor: Cursor = None,
) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    if not records_view.sees_records(principal):
        return error_page(request, "Forbidden", "Your roles do not allow you to read records.", 403)
    filters = {
        "kind": kind or "",
        "state": state or "",
        "tenant": "" if principal.tenant_scoped else (tenant or ""),
        "open": "1" if open_only else "",
    }
    context: dict[str, Any] = {
        "principal": principal,
        "filters": filters,
        "kinds": records_view.KINDS,
        "states": records_view.STATES,
        "rows": [],
        "next_link": None,
        "first_link": None,
        "error": None,
        **_helpers(),
    }
    if filters["kind"] and filters["kind"] not in records_view.KINDS:
        context["error"] = f"There is no kind of record {filters['kind']!r}."
        return render(request, "records.html", context, status=422)
    if filters["state"] and filters["state"] not in records_view.STATES:
        context["error"] = f"There is no record state {filters['state']!r}."
        return render(request, "records.html", context, status=422)
    try:
        with database(request).read() as session:
            rows, next_cursor = itil.list_records(
                session,
                principal=principal,
                kind=Kind(filters["kind"]) if filters["kind"] else None,
                state=filters["state"] or None,
                tenant=filters["tenant"] or None,
                open_only=bool(filters["open"]),
                cursor=cursor or None,
                limit=PAGE_SIZE,
            )
            context["rows"] = [RecordRead.model_validate(r) for r in rows]
    except AppError as exc:
        context["error"] = exc.detail
        return render(request, "records.html", context, status=exc.status)
    kept = {k: v for k, v in filters.items() if v}
    if next_cursor:
        context["next_link"] = "/records?" + urlencode({**kept, "cursor": next_cursor})
    if cursor:
        context["first_link"] = "/records" + (f"?{urlencode(kept)}" if kept else "")
    return render(request, "records.html", context)


def _record_page(
    request: Request,
    principal: Principal,
    ref: str,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """The record's page (with a refusal next to the forms), or the error page."""
    if not records_view.sees_records(principal):
        return error_page(request, "Forbidden", "Your roles do not allow you to read records.", 403)
    if not _known_shape(ref):
        return error_page(request, "Not found", "There is no such record.", 404)
    try:
        with database(request).read() as session:
            page = records_view.build_record(
                session,
                principal=principal,
                ref=ref,
                sees_pages=oncall_view.sees_pages(principal),
            )
    except AppError as exc:
        return error_page(request, exc.title, exc.detail, exc.status)
    context = {
        "principal": principal,
        "page": page,
        "error": error,
        "form": form or {},
        "flash": flash.read(request),
        **_helpers(),
    }
    return flash.shown(request, render(request, "record.html", context, status), path=FLASH_PATH)


@router.get("/records/{ref}")
def record_page(request: Request, ref: Ref) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    return _record_page(request, principal, ref)


async def _checked(
    request: Request, ref: str, route: tuple[str, str], verb: str
) -> tuple[Principal, dict[str, str]] | Response:
    """The viewer and form of a CSRF-checked POST whom the API's role table allows ``route``."""
    form = await posted_form(request)
    if form is None:
        return forbidden(request)
    principal = page_principal(request)
    if principal is None:  # the session idled out: back to the record after signing in
        back = urlencode({"next": f"/records/{ref}" if _known_shape(ref) else "/records"})
        return RedirectResponse(f"/login?{back}", status_code=303)
    if not _known_shape(ref):
        return error_page(request, "Not found", "There is no such record.", 404)
    if not may(principal, *route):
        return error_page(
            request, "Forbidden", f"Your roles do not allow you to {verb} records.", 403
        )
    return principal, form


def _done(request: Request, number: str, text: str) -> Response:
    target = f"/records/{quote(number, safe='')}"
    return flash.redirect(request, target, path=FLASH_PATH, level="ok", text=text)


@router.post("/records/{ref}/transition")
async def transition(request: Request, ref: Ref) -> Response:
    checked = await _checked(request, ref, records_view.TRANSITION_ROUTE, "move")
    if isinstance(checked, Response):
        return checked
    principal, form = checked
    try:
        data = TransitionCreate.model_validate(
            {
                "state": form.get("state", ""),
                "resolution": form.get("resolution", "").strip() or None,
                "note": form.get("note", "").strip() or None,
            }
        )
    except ValidationError as exc:
        problem = "; ".join(field_messages(exc))
        return _record_page(request, principal, ref, error=problem, form=form, status=422)
    try:
        version = form_version(form)
        with database(request).write() as session:
            record = itil.transition(
                session,
                actor=principal,
                ref=ref,
                to=data.state,
                resolution=data.resolution,
                note=data.note,
                expected_version=version,
            )
            number, state = record.number, record.state
    except NotFound as exc:
        return error_page(request, "Not found", exc.detail, 404)
    except AppError as exc:
        return _record_page(request, principal, ref, error=exc.detail, form=form, status=exc.status)
    return _done(request, number, f"{number} is now {records_view.label(state)}.")


@router.post("/records/{ref}/notes")
async def add_note(request: Request, ref: Ref) -> Response:
    checked = await _checked(request, ref, records_view.NOTE_ROUTE, "annotate")
    if isinstance(checked, Response):
        return checked
    principal, form = checked
    try:
        data = NoteCreate.model_validate({"text": form.get("text", "").strip()})
    except ValidationError:
        return _record_page(
            request,
            principal,
            ref,
            error="A work note needs text (1 to 20000 characters).",
            form=form,
            status=422,
        )
    try:
        with database(request).write() as session:
            record = itil.get(session, principal=principal, ref=ref)
            number = record.number
            itil.add_note(session, actor=principal, ref=record.id, text=data.text)
    except NotFound as exc:
        return error_page(request, "Not found", exc.detail, 404)
    except AppError as exc:
        return _record_page(request, principal, ref, error=exc.detail, form=form, status=exc.status)
    return _done(request, number, f"Work note added to {number}.")
