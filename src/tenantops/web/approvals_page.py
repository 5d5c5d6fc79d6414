"""The approvals inbox: what waits for the viewer (``GET /approvals``) and deciding it.

``POST /approvals/decide`` takes one decision (approve or reject, with a
comment) and calls the service function the JSON API calls for that kind —
``decide_onboarding``, ``decide_reactivation`` or ``decide_gate`` — with the
API's role table in front of it, so every rule is the API's. Done, the answer
is a redirect back to the inbox with a one-time flash message (a short-lived
cookie). Refused, nothing changed and the inbox is shown again at once (422)
saying why, the comment typed back in its form to be corrected (e.g. an Access
Review decision its gate check refused), however long it is.
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
    response = _inbox(request, principal, flash.read(request))
    return flash.shown(request, response, path=FLASH_PATH)


def _inbox(
    request: Request,
    principal: Principal,
    message: tuple[str, str] | None,
    *,
    typed: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """The inbox page; ``typed``: a refused comment put back in its item's form (by key)."""
    with database(request).read() as session:
        box = inbox.build_inbox(session, principal=principal)
    return render(
        request,
        "approvals.html",
        {
            "principal": principal,
            "inbox": box,
            "kinds": inbox.KINDS,
            "titles": inbox.KIND_TITLES,
            "labels": inbox.KIND_LABELS,
            "flash": message,
            "typed": typed or {},
        },
        status=status,
    )


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
        if decision == "approve":
            return (
                f"You approved the reactivation of {name}; it stays {state} until its"
                " reactivation run has restored network, queues, secrets and access."
            )
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
        return _refused(request, principal, form, exc.detail)
    except ValidationError as exc:
        return _refused(request, principal, form, _invalid(exc))
    return flash.redirect(request, "/approvals", path=FLASH_PATH, level="ok", text=message)


def _refused(request: Request, principal: Principal, form: dict[str, str], why: str) -> Response:
    """The inbox again (422, no redirect), saying why, the comment back in its form.

    Not a flash cookie: a browser keeps about 4 KB of one, and a comment of the
    form's 2,000 characters, percent-encoded (up to 9 bytes a character), would
    not fit, so it would be cut or lost. Here it comes back whole, to be corrected.
    """
    comment = form.get("comment", "")
    with database(request).read() as session:
        box = inbox.build_inbox(session, principal=principal)
    keys = [i.key for items in box.mine.values() for i in items if _posted_by(i.fields, form)]
    text = f"Not done: {why.rstrip('.')}. Nothing was changed."
    if comment.strip() and not keys:  # its item is gone from the inbox: show the text instead
        text += f" Your comment was: {' '.join(comment.split())}"
    typed = dict.fromkeys(keys, comment) if comment.strip() else {}
    return _inbox(request, principal, ("error", text), typed=typed, status=422)


def _posted_by(fields: dict[str, str], form: dict[str, str]) -> bool:
    """Whether ``form`` was posted from the decision form with these hidden ``fields``.

    The record version aside: a form refused as stale gets its comment back in
    the form rendered with the version now.
    """
    same = [form.get(k) == str(v) for k, v in fields.items() if k != "version"]
    return bool(same) and all(same)
