"""The approvals inbox: what waits for the viewer (``GET /approvals``) and deciding it.

``POST /approvals/decide`` takes one decision (approve or reject, with a
comment) and calls the service function the JSON API calls for that kind —
``decide_onboarding``, ``decide_reactivation`` or ``decide_gate`` — with the
API's role table in front of it, so every rule is the API's. The answer is a
redirect back to the inbox with a one-time flash message (a short-lived
cookie): what was done, or why it was refused, in which case nothing changed
and the comment typed is shown back to be corrected (e.g. an Access Review
decision its gate check refused).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from tenantops.auth.policy import allowed_roles
from tenantops.auth.principal import Principal
from tenantops.errors import AppError, Forbidden, Unprocessable
from tenantops.kit.web import wake_worker
from tenantops.runbooks import service as runbooks
from tenantops.runbooks.actions import GateChecks
from tenantops.runbooks.schemas import GateDecisionCreate
from tenantops.tenants import service as tenants
from tenantops.tenants.schemas import ApprovalCreate, ReactivationDecisionCreate
from tenantops.web import flash, inbox
from tenantops.web.pagekit import (
    database,
    forbidden,
    form_version,
    page_principal,
    posted_form,
    render,
    to_login,
)

router = APIRouter(include_in_schema=False)

FLASH_PATH = "/approvals"


@router.get("/approvals")
def approvals_inbox(request: Request) -> Response:
    principal = page_principal(request)
    if principal is None:
        return to_login(request)
    db = database(request)
    with db.read() as session:
        box = inbox.build_inbox(session, principal=principal)
    response = render(
        request,
        "approvals.html",
        {
            "principal": principal,
            "inbox": box,
            "kinds": inbox.KINDS,
            "titles": inbox.KIND_TITLES,
            "labels": inbox.KIND_LABELS,
            "flash": flash.read(request),
        },
    )
    return flash.shown(request, response, path=FLASH_PATH)


def _route_check(principal: Principal, kind: str) -> None:
    """The API's role table for the route this decision is (the services check the rest)."""
    roles = allowed_roles(*inbox.ROUTES[kind])
    if not principal.roles & roles:
        raise Forbidden(f"this decision needs one of: {', '.join(sorted(r.value for r in roles))}")


def _decide(request: Request, principal: Principal, form: dict[str, str]) -> str:
    """Take the form's decision through the API's service function; what happened, in words."""
    kind = form.get("kind", "")
    decision = form.get("decision", "")
    comment = form.get("comment", "").strip() or None
    done = inbox.PAST.get(decision, decision)
    db = database(request)
    if kind == inbox.ONBOARDING:
        _route_check(principal, kind)
        data = ApprovalCreate.model_validate(
            {"role": form.get("role", ""), "decision": decision, "comment": comment}
        )
        with db.write() as session:
            tenant = tenants.decide_onboarding(
                session,
                principal=principal,
                ref=form.get("tenant", ""),
                data=data,
                if_match=form_version(form),
            )
            name, state = tenant.name, tenant.state
        wake_worker(request)
        return f"You {done} the onboarding of {name} as {data.role}; the tenant is {state}."
    if kind == inbox.REACTIVATION:
        _route_check(principal, kind)
        reactivation = ReactivationDecisionCreate.model_validate(
            {"decision": decision, "comment": comment}
        )
        with db.write() as session:
            tenant = tenants.decide_reactivation(
                session,
                principal=principal,
                ref=form.get("tenant", ""),
                request_id=form.get("request_id", ""),
                data=reactivation,
                if_match=form_version(form),
            )
            name, state = tenant.name, tenant.state
        wake_worker(request)
        return f"You {done} the reactivation of {name}; the tenant is {state}."
    if kind in (inbox.GATE, inbox.BREAK_GLASS):
        _route_check(principal, inbox.GATE)
        gate = GateDecisionCreate.model_validate({"decision": decision, "comment": comment})
        step = form.get("step", "")
        checks: GateChecks = request.app.state.gate_checks
        with db.write() as session:
            run = runbooks.decide_gate(
                session,
                principal=principal,
                run_id=form.get("run_id", ""),
                step=step,
                data=gate,
                checks=checks,
            )
            title, status = run.runbook_id, run.status
        wake_worker(request)
        what = "the break-glass review" if kind == inbox.BREAK_GLASS else f"gate {step!r}"
        return f"You {done} {what} of run {title}; the run is {status}."
    raise Unprocessable("unknown kind of decision", param="kind")


def _invalid(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "form"
    return f"{where}: {first.get('msg', 'invalid')}"


@router.post("/approvals/decide")
async def decide(request: Request) -> Response:
    form = await posted_form(request)
    if form is None:
        return forbidden(request)
    principal = page_principal(request)
    if principal is None:  # the session ended between the page and the press
        return RedirectResponse("/login?next=%2Fapprovals", status_code=303)
    try:
        message = _decide(request, principal, form)
    except AppError as exc:
        refused = f"Not done: {exc.detail.rstrip('.')}. Nothing was changed."
        return _with_flash(request, "error", refused + _typed(form))
    except ValidationError as exc:
        return _with_flash(request, "error", f"Not done: {_invalid(exc)}. Nothing was changed.")
    return _with_flash(request, "ok", message)


def _typed(form: dict[str, str]) -> str:
    """The refused comment, shown back (the form is empty again) so it can be corrected."""
    comment = " ".join(form.get("comment", "").split())
    return f" Your comment was: {comment}" if comment else ""


def _with_flash(request: Request, level: flash.Level, text: str) -> Response:
    return flash.redirect(request, "/approvals", path=FLASH_PATH, level=level, text=text)
